"""Guard Playwright scripts (sync and async API) against a VastCap account that cannot pay.

>>> from vastcap_guard.playwright import guard          # doctest: +SKIP
>>> @guard(interval=30)
... def main():
...     with sync_playwright() as p:
...         browser = p.chromium.launch()
...         ...

See ``docs/playwright.md`` for the full reference.
"""

from __future__ import annotations

try:
    import playwright.async_api
    import playwright.sync_api  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "vastcap_guard.playwright needs Playwright: pip install 'vastcap-guard[playwright]'"
    ) from exc

from ._guard import PlaywrightGuard, guard

__all__ = ["PlaywrightGuard", "guard"]
