"""Guard Playwright scripts (sync and async API) against a VastCap account that cannot pay.

>>> from vastcap_guard.playwright import guard          # doctest: +SKIP
>>> @guard(interval=30)
... def main():
...     with sync_playwright() as p:
...         browser = p.chromium.launch()
...         ...

Works with Playwright and with its drop-in forks patchright and rebrowser-playwright (each is
hooked in its own module tree), and with camoufox (which launches through Playwright). Any one
of them is enough. See ``docs/playwright.md`` for the full reference.
"""

from __future__ import annotations

from ._flavors import DISTRIBUTIONS, installed_names

if not installed_names():  # pragma: no cover - depends on the environment
    raise ImportError(
        "vastcap_guard.playwright needs Playwright or a fork of it: pip install 'vastcap-guard[playwright]' "
        f"(or one of: {', '.join(DISTRIBUTIONS.values())})"
    )

from ._guard import PlaywrightGuard, guard

__all__ = ["PlaywrightGuard", "guard"]
