"""Poll sharing with Playwright: N concurrent async guard scopes in one process, real Chromium.

Usage: ``python bench/pw_worker.py CONFIG_JSON`` (keys: key, api_url, site_url, sessions, interval,
intervals, chromium). Prints one JSON line: when the first scope was entered, when the last one
left, the window during which all scopes were running (``intervals`` intervals), pages per scope. Started by ``bench/run.py``.

One browser is launched outside the guard; each scope opens its own context and page on it (a
context opened inside the scope is checked and tracked by the guard) and loads pages of the local
site until its time is up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from playwright.async_api import async_playwright

from vastcap_guard.playwright import guard

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"sessions": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=cfg.get("chromium") or None, args=ARGS)
        out["browser_version"] = browser.version
        n = cfg["sessions"]
        ready: list[int] = []
        all_ready = asyncio.Event()
        window: dict[str, float] = {}

        async def session(i: int) -> dict[str, Any]:
            rec: dict[str, Any] = {"index": i, "pages": 0}
            async with guard(cfg["key"], api_url=cfg["api_url"], interval=cfg["interval"]) as g:
                rec["entered_at"] = time.time()
                ctx = await browser.new_context()
                page = await ctx.new_page()
                ready.append(i)
                if len(ready) == n:  # every scope is in: the measured window starts now, for all of them
                    window["start"] = time.time()
                    window["end"] = window["start"] + cfg["interval"] * cfg["intervals"]
                    all_ready.set()
                k = i
                while not all_ready.is_set() or time.time() < window["end"]:
                    await page.goto(f"{cfg['site_url']}page/{k % 1000}")
                    rec["pages"] += 1
                    k += n
                await ctx.close()
                rec["checks"] = g.snapshot().get("checks")
            rec["left_at"] = time.time()
            return rec

        out["sessions"] = await asyncio.gather(*(session(i) for i in range(n)))
        out["window"] = window
        await browser.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1]))), default=str))
