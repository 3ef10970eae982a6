"""A guarded Playwright script that the account runs dry under, run in a child process by the tests.

    python tests/playwright/guarded_script.py '{"flavor": "patchright", "api": "sync", "shape": "decorator",
                                                 "launch": {...}, "block": ["playwright"]}'

It starts its own sandbox and local site, runs one script shape under ``vastcap_guard.playwright.guard``
with the given flavor (``playwright``, ``patchright`` or ``rebrowser_playwright``) and API, empties
the account once the script is busy, and prints one JSON line: what the guarded code raised, what
Playwright raised under it, which flavors the guard found. Everything Python prints at exit (the
asyncio noise of issue 11) stays on stderr for the test to read.

Shapes (sync API; the async API has ``decorator`` only):

- ``decorator``: ``@guard`` around a function holding ``with sync_playwright()``, stopped while
  the script waits in ``page.wait_for_timeout`` (``with sync_playwright()`` ends before the guard);
- ``inner``: ``with guard()`` inside ``with sync_playwright()`` (the guard ends first);
- ``sleep``: as ``decorator``, but the stop comes while the script is in ``time.sleep()``, outside
  Playwright, and the function then returns normally;
- ``startstop``: ``sync_playwright().start()`` and ``p.stop()`` inside the guard.

``block`` makes modules unimportable (``sys.modules[name] = None``), as if not installed.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
import time
from typing import Any

KEY = "vc_SCRIPTKEY_s3cr3t_5e6f7a8b9c"


def describe(exc: BaseException | None) -> str | None:
    return None if exc is None else f"{type(exc).__module__}.{type(exc).__qualname__}"


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    for name in cfg.get("block", []):
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError

    from vastcap_guard import GuardError
    from vastcap_guard.playwright import _flavors, guard
    from vastcap_guard.sandbox import Sandbox
    from vastcap_guard.site import LocalSite

    flavor, api_kind, shape, launch = cfg["flavor"], cfg["api"], cfg["shape"], cfg["launch"]
    out: dict[str, Any] = {"flavors": _flavors.installed_names(), "reached_end": False, "loads": 0}
    api = importlib.import_module(f"{flavor}.{api_kind}_api")

    with Sandbox({KEY: "10"}) as sandbox, LocalSite(pages=20) as site:
        g = guard(KEY, api_url=sandbox.url, interval=0.2)

        def empty_and_wait_for_the_stop() -> None:
            sandbox.set_balance(KEY, 0)
            deadline = time.monotonic() + 30
            while g.tripped is None and time.monotonic() < deadline:
                time.sleep(0.05)  # outside Playwright: its loop does not run
            time.sleep(0.3)

        def browse_sync(p: Any) -> None:
            browser = p.chromium.launch(**launch)
            page = browser.new_context().new_page()
            page.goto(site.url)
            out["loads"] += 1
            if shape == "sleep":
                empty_and_wait_for_the_stop()
                return
            sandbox.set_balance(KEY, 0)
            page.wait_for_timeout(60_000)  # only the guard can end this
            out["reached_end"] = True

        async def browse_async(p: Any) -> None:
            browser = await p.chromium.launch(**launch)
            page = await (await browser.new_context()).new_page()
            await page.goto(site.url)
            out["loads"] += 1
            sandbox.set_balance(KEY, 0)
            await page.wait_for_timeout(60_000)
            out["reached_end"] = True

        try:
            if api_kind == "async":

                @g
                async def script_async() -> None:
                    async with api.async_playwright() as p:
                        await browse_async(p)

                asyncio.run(script_async())
            elif shape in ("decorator", "sleep"):

                @g
                def script() -> None:
                    with api.sync_playwright() as p:
                        browse_sync(p)

                script()
            elif shape == "inner":
                with api.sync_playwright() as p:
                    with g:
                        browse_sync(p)
            elif shape == "startstop":
                with g:
                    p = api.sync_playwright().start()
                    try:
                        browse_sync(p)
                    finally:
                        p.stop()
            else:
                raise SystemExit(f"unknown shape {shape}")
        except GuardError as exc:
            out["error"] = type(exc).__name__
            out["reason"] = exc.reason
            out["cause"] = describe(exc.__cause__)
            out["cause_text"] = str(exc.__cause__ or "")[:300]
        else:
            out["error"] = None
    out["playwright_importable"] = importlib.util.find_spec("playwright") is not None
    out["playwright_loaded"] = sys.modules.get("playwright") is not None
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
