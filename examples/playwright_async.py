"""A guarded Playwright script (async API) that runs offline against the VastCap sandbox.

    python examples/playwright_async.py
    CHROMIUM_PATH=/path/to/chromium python examples/playwright_async.py     # a browser of your choice

Three pages are browsed at once in one browser under ``async with guard(...)``. The sandbox balance
drops to zero part-way; the guard's task on the script's own loop closes the browser, every
pending ``page.goto`` fails at once, and the ``async with`` block raises ``LowBalanceError``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from playwright.async_api import Browser, async_playwright
from playwright.async_api import Error as PlaywrightError

from vastcap_guard import GuardError, LowBalanceError
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

# The browser: the one at $CHROMIUM_PATH, else Debian's /usr/bin/chromium, else Playwright's own
# (`python -m playwright install chromium`, which needs the network once). As root, Chromium needs
# --no-sandbox.
SYSTEM_CHROMIUM = "/usr/bin/chromium"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or (SYSTEM_CHROMIUM if os.path.exists(SYSTEM_CHROMIUM) else "")
LAUNCH = (
    {"executable_path": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}
    if CHROMIUM
    else {}
)
NO_BROWSER = (
    "No browser for Playwright: install Playwright's own with `python -m playwright install chromium` "
    "(it downloads it), or point this example at an installed Chromium or Chrome: "
    "CHROMIUM_PATH=/path/to/chromium python {script}"
)


def no_browser(exc: Exception) -> bool:
    """Playwright could not find the browser to launch (not installed, or a wrong path)."""
    return "executable doesn't exist" in str(exc).lower()


async def worker(browser: Browser, site: LocalSite, start: int, pages: int) -> int:
    context = await browser.new_context()  # checked (a recent reading is reused) and tracked
    page = await context.new_page()
    for n in range(start, start + pages):
        await page.goto(site.page_url(n % site.pages))
    await context.close()
    return pages


async def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with Sandbox() as sandbox, LocalSite(pages=300) as site:
        g = guard(sandbox.key, api_url=sandbox.url, interval=1)
        try:
            async with g:
                async with async_playwright() as p:
                    browser = await p.chromium.launch(**LAUNCH)
                    loop = asyncio.get_running_loop()
                    loop.call_later(2.0, sandbox.set_balance, sandbox.key, 0)  # emptied elsewhere
                    done = await asyncio.gather(*(worker(browser, site, i * 100, 100_000) for i in range(3)))
                    print(f"finished without a stop ({sum(done)} pages)")
                    return 1
        except LowBalanceError as exc:
            print(f"stopped: {exc.reason}, balance {exc.balance}; cause: {type(exc.__cause__).__name__}")
            print(f"pages visited before the stop: {site.request_count}; guard counters: {g.snapshot()}")
            return 0
        except GuardError as exc:
            print(f"refused: {exc.reason}: {exc}")
            return 1
        except PlaywrightError as exc:
            if not no_browser(exc):
                raise
            print(NO_BROWSER.format(script=sys.argv[0]), file=sys.stderr)
            return 2


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
