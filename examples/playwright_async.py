"""A guarded Playwright script (async API) that runs offline against the VastCap sandbox.

    python examples/playwright_async.py

Three pages are browsed at once in one browser under ``async with guard(...)``. The sandbox balance
drops to zero part-way; the guard's task on the script's own loop closes the browser, every
pending ``page.goto`` fails at once, and the ``async with`` block raises ``LowBalanceError``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from playwright.async_api import Browser, async_playwright

from vastcap_guard import GuardError, LowBalanceError
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

SYSTEM_CHROMIUM = "/usr/bin/chromium"
LAUNCH = (
    {"executable_path": SYSTEM_CHROMIUM, "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}
    if os.path.exists(SYSTEM_CHROMIUM)
    else {}
)


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


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
