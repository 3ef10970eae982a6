"""Fleet mode reaches Selenium scripts: a stop found by another process stops this script's driver."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from fleet_support import Member

from vastcap_guard import LowBalanceError
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

sys.path.insert(0, str(Path(__file__).parent.parent / "selenium"))
from sel_support import MISSING, TOKEN_VAR, Processes, chrome

KEY = "vc_FLEETSEL_s3cr3t_5e6f7a8b9c"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(bool(MISSING), reason=f"needs chromium and chromium-driver: {MISSING} missing")]


def test_a_fleet_stop_stops_a_selenium_script(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vastcap_guard.selenium import guard

    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, token)
    procs = Processes(token)
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=50) as site:
        outcome: dict[str, object] = {}
        browsing = threading.Event()

        def script() -> None:
            # a minute between its own checks: only the fleet can stop it in time
            with guard(KEY, api_url=sb.url, interval=60, shared_state=redis_url):
                driver = chrome()
                try:
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        driver.get(site.page_url(1))
                        browsing.set()
                        time.sleep(0.1)
                finally:
                    driver.quit()

        def run() -> None:
            try:
                script()
            except BaseException as exc:
                outcome["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        assert browsing.wait(30), "the script never browsed"
        strict = Member(api_url=sb.url, key=KEY, shared_state=redis_url, interval=0.3, min_balance="20", duration=10)
        strict.wait()
        assert strict.exit_reason == "vastcap_low_balance"
        t.join(30)
        assert not t.is_alive()
        error = outcome.get("error")
        assert isinstance(error, LowBalanceError), repr(error)
        assert "fleet" in str(error)
        procs.assert_gone()
