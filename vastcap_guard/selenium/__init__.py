"""Guard Selenium scripts against a VastCap account that cannot pay.

>>> from vastcap_guard.selenium import guard          # doctest: +SKIP
>>> @guard(interval=30)
... def main():
...     driver = webdriver.Chrome()
...     ...

Every WebDriver session the guarded code starts (Chrome, Firefox, Edge, ``webdriver.Remote``,
undetected-chromedriver, SeleniumBase's drivers: any subclass of Selenium's remote ``WebDriver``)
is checked and watched. See ``docs/selenium.md`` for the full reference.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("selenium") is None:  # pragma: no cover - depends on the environment
    raise ImportError("vastcap_guard.selenium needs Selenium: pip install 'vastcap-guard[selenium]'")

from ._guard import SeleniumGuard, guard

__all__ = ["SeleniumGuard", "guard"]
