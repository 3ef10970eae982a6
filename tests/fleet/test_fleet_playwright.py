"""Fleet mode reaches Playwright scripts: a stop found by another process closes this script's browser."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest
from fleet_support import Member

from vastcap_guard import LowBalanceError
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

sys.path.insert(0, str(Path(__file__).parent.parent / "playwright"))
from pw_support import find_browser

KEY = "vc_FLEETPW_s3cr3t_0a1b2c3d4e"
BROWSER = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium: apt-get install chromium")


def test_a_fleet_stop_closes_an_async_playwright_script(redis_url: str) -> None:
    from playwright.async_api import async_playwright

    from vastcap_guard.playwright import guard

    assert BROWSER is not None
    _desc, launch_opts = BROWSER
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=50) as site:
        stopped: dict[str, object] = {}
        browsing = threading.Event()

        async def script() -> None:
            # a minute between its own checks: only the fleet can stop it in time
            async with guard(KEY, api_url=sb.url, interval=60, shared_state=redis_url):
                async with async_playwright() as p:
                    browser = await p.chromium.launch(**launch_opts)
                    page = await browser.new_page()
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        await page.goto(site.page_url(1))
                        browsing.set()
                        await asyncio.sleep(0.1)

        def run() -> None:
            try:
                asyncio.run(script())
            except BaseException as exc:
                stopped["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        # the script is browsing (a stop broadcast before it joined the fleet would not concern it)
        assert browsing.wait(60), stopped
        strict = Member(api_url=sb.url, key=KEY, shared_state=redis_url, interval=0.3, min_balance="20", duration=10)
        strict.wait()
        assert strict.exit_reason == "vastcap_low_balance"
        t.join(30)
        assert not t.is_alive()
        error = stopped.get("error")
        assert isinstance(error, LowBalanceError), repr(error)
        assert "fleet" in str(error)
