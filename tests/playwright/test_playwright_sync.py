"""The guard around Playwright's sync API, driving a real headless Chromium."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from core_keys import BAD_KEY, DISABLED_KEY, KEY, LOW_KEY
from playwright.sync_api import BrowserType, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from pw_fixtures import (  # noqa: F401
    hanging_fixture,
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)
from pw_support import (
    HangingPage,
    assert_gone,
    browser_pids,
    chromium_descendants,
    set_balance_when,
    wait_until,
)

from vastcap_guard import AccountDisabledError, GuardError, InvalidKeyError, LowBalanceError
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = pytest.mark.browser

REFUSALS = [
    (BAD_KEY, InvalidKeyError),
    (DISABLED_KEY, AccountDisabledError),
    (LOW_KEY, LowBalanceError),
]


@pytest.fixture
def launch_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call that reaches Playwright's own ``BrowserType.launch`` (under the guard's hook)."""
    calls: list[str] = []
    original = BrowserType.launch

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("launch")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BrowserType, "launch", spy)
    return calls


# -- pre-flight ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "error"), REFUSALS, ids=["invalid-key", "disabled", "low-balance"])
def test_preflight_refusal_decorator_launches_nothing(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, launch_spy: list[str], key: str, error: type[GuardError]
) -> None:
    ran: list[bool] = []

    @guard(key, api_url=sandbox.url, interval=0.5)
    def script() -> None:
        ran.append(True)
        with sync_playwright() as p:
            p.chromium.launch(**launch).close()

    with pytest.raises(error) as info:
        script()
    assert ran == [] and launch_spy == []
    assert browser_pids(marker) == [] and chromium_descendants() == []
    assert sandbox.call_count("getBalance") == 1
    if error is LowBalanceError:
        assert info.value.balance == Decimal("0.0005")  # type: ignore[attr-defined]
    assert key not in str(info.value) and key not in repr(info.value)


@pytest.mark.parametrize(("key", "error"), REFUSALS, ids=["invalid-key", "disabled", "low-balance"])
def test_preflight_refusal_with_block_launches_nothing(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, launch_spy: list[str], key: str, error: type[GuardError]
) -> None:
    ran: list[bool] = []
    with pytest.raises(error):
        with guard(key, api_url=sandbox.url, interval=0.5):
            ran.append(True)
            with sync_playwright() as p:
                p.chromium.launch(**launch).close()
    assert ran == [] and launch_spy == []
    assert browser_pids(marker) == [] and chromium_descendants() == []


def test_a_refused_preflight_logs_one_line_saying_the_script_did_not_start(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="vastcap_guard")
    with pytest.raises(LowBalanceError):
        with guard(LOW_KEY, api_url=sandbox.url, interval=0.5):
            pytest.fail("the body ran on a low balance")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith("vastcap-guard did not start the Playwright script [vastcap_low_balance]: ")
    assert "is stopping" not in caplog.text and LOW_KEY not in caplog.text


def test_missing_key_refuses_without_calling_the_api(sandbox: Sandbox) -> None:
    with pytest.raises(InvalidKeyError):
        with guard(api_url=sandbox.url):
            pytest.fail("the body ran without a key")
    assert sandbox.call_count("getBalance") == 0


def test_key_and_url_come_from_the_environment(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VASTCAP_API_KEY", LOW_KEY)
    monkeypatch.setenv("VASTCAP_API_URL", sandbox.url)
    with pytest.raises(LowBalanceError):
        with guard():
            pytest.fail("the body ran on a low balance")
    assert sandbox.call_count("getBalance") == 1


# -- stopping a busy script ------------------------------------------------------------------------
def test_balance_zero_while_waiting_on_a_page_stops_the_script(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, hanging: HangingPage
) -> None:
    set_balance_when(hanging.reached, sandbox, KEY, 0)
    reached_end: list[bool] = []

    @guard(KEY, api_url=sandbox.url, interval=0.5)
    def script() -> None:
        with sync_playwright() as p:
            browser = p.chromium.launch(**launch)
            page = browser.new_page()
            page.goto(hanging.url, timeout=60_000)  # never loads: only the guard can end this
            reached_end.append(True)

    with pytest.raises(LowBalanceError) as info:
        script()
    assert reached_end == []
    assert info.value.balance == 0
    cause = info.value.__cause__
    assert isinstance(cause, PlaywrightError)
    # the pending goto fails with the close reason, or as an aborted navigation when Chromium drops
    # the page first (docs/playwright.md says both); it never just times out
    assert "vastcap_low_balance" in str(cause) or "net::ERR_ABORTED" in str(cause), str(cause)
    assert_gone(marker)


def test_balance_zero_while_navigating_stops_the_loop(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite
) -> None:
    visited = 0
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.5) as g:
            with sync_playwright() as p:
                browser = p.chromium.launch(**launch)
                page = browser.new_page()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # the natural end: a minute of browsing
                    page.goto(site.page_url(visited % site.pages))
                    visited += 1
                    if visited == 5:
                        sandbox.set_balance(KEY, 0)
    assert info.value.balance == 0
    assert isinstance(info.value.__cause__, PlaywrightError)
    assert g.tripped is info.value
    assert visited >= 5
    assert_gone(marker)
    seen = site.request_count
    time.sleep(0.3)
    assert site.request_count == seen  # nothing browses on after the stop


def test_stop_while_the_script_sleeps_raises_at_exit_and_closes(
    sandbox: Sandbox, launch: dict[str, Any], marker: str
) -> None:
    """Outside Playwright calls its loop does not run: the close completes when the guarded code ends."""
    with sync_playwright() as p:
        with pytest.raises(LowBalanceError) as info:
            with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                browser = p.chromium.launch(**launch)
                sandbox.set_balance(KEY, 0)
                assert wait_until(lambda: g.tripped is not None, timeout=15)
                time.sleep(0.2)  # not inside Playwright: the scheduled close waits for us
        assert info.value.__cause__ is None
        assert not browser.is_connected()
        assert_gone(marker)


def test_a_start_after_a_stop_is_refused(sandbox: Sandbox, launch: dict[str, Any], marker: str) -> None:
    with sync_playwright() as p:
        with pytest.raises(LowBalanceError):
            with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                browser = p.chromium.launch(**launch)
                sandbox.set_balance(KEY, 0)
                assert wait_until(lambda: g.tripped is not None, timeout=15)
                before = browser_pids(marker)
                with pytest.raises(LowBalanceError):
                    browser.new_context()
                with pytest.raises(LowBalanceError):
                    p.chromium.launch(**launch)
                assert set(browser_pids(marker)) <= set(before)  # nothing new was started
        assert_gone(marker)


def test_watch_closes_a_browser_made_outside_the_guard(
    sandbox: Sandbox, launch: dict[str, Any], marker: str
) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(**launch)  # before the guard: not hooked
        page = browser.new_page()
        with pytest.raises(LowBalanceError) as info:
            with guard(KEY, api_url=sandbox.url, interval=0.3) as g:
                assert g.watch(browser) is browser
                threading.Timer(0.5, sandbox.set_balance, (KEY, 0)).start()
                page.wait_for_timeout(60_000)
        assert isinstance(info.value.__cause__, PlaywrightError)
        assert not browser.is_connected()
    assert_gone(marker)


# -- what is not stopped -------------------------------------------------------------------------
def test_transient_failures_below_max_failures_do_not_stop(
    sandbox: Sandbox, launch: dict[str, Any], site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vastcap_guard")
    with guard(KEY, api_url=sandbox.url, interval=0.3, max_failures=3) as g:
        # six failing HTTP calls: two failed checks in a row (the client tries each check 3 times)
        sandbox.fault("getBalance", "status", status=502, times=6)
        with sync_playwright() as p:
            browser = p.chromium.launch(**launch)
            page = browser.new_page()
            deadline = time.monotonic() + 60
            n = 0

            def recovered() -> bool:
                calls = sandbox.calls("getBalance")
                faulted = [i for i, c in enumerate(calls) if c.fault]
                return len(faulted) == 6 and len(calls) - faulted[-1] > 2

            while not recovered() and time.monotonic() < deadline:
                page.goto(site.page_url(n % site.pages))
                n += 1
            assert recovered(), "the faults never happened"
            browser.close()
    assert g.tripped is None
    snap = g.snapshot()
    assert snap["check_failures"] == 2 and snap["tripped"] is None
    failures = [r for r in caplog.records if "balance check failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.levelno == logging.WARNING for r in failures)
    assert all("\n" not in r.getMessage() and r.exc_info is None for r in failures)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("vastcap_guard")]
    assert loud == failures  # one line per tolerated failure, nothing else
    assert KEY not in caplog.text


def test_outside_objects_and_later_code_are_untouched(
    sandbox: Sandbox, launch: dict[str, Any], site: LocalSite
) -> None:
    original = BrowserType.launch
    with sync_playwright() as p:
        outside = p.chromium.launch(**launch)
        with pytest.raises(LowBalanceError):
            with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                assert BrowserType.launch is not original  # hooked while a guard is active
                inside = p.chromium.launch(**launch)
                sandbox.set_balance(KEY, 0)
                assert wait_until(lambda: g.tripped is not None, timeout=15)
        assert BrowserType.launch is original  # restored
        assert not inside.is_connected()
        # the browser started before the guard is not the guard's: it still works
        page = outside.new_page()
        page.goto(site.url)
        assert page.title() == "Demo site"
        calls = sandbox.call_count("getBalance")
        later = p.chromium.launch(**launch)  # after the guard: no check, no tracking
        later.new_page().goto(site.url)
        later.close()
        assert sandbox.call_count("getBalance") == calls
        outside.close()


def test_session_starts_reuse_a_recent_reading(sandbox: Sandbox, launch: dict[str, Any]) -> None:
    with guard(KEY, api_url=sandbox.url, interval=60) as g:
        with sync_playwright() as p:
            browser = p.chromium.launch(**launch)
            for _ in range(3):
                browser.new_context().new_page()
                browser.new_page()
            browser.close()
    assert sandbox.call_count("getBalance") == 1  # the pre-flight reading is younger than 60 s
    assert g.snapshot()["checks"] == 1


def test_a_body_error_without_a_stop_is_not_translated(sandbox: Sandbox) -> None:
    with pytest.raises(ZeroDivisionError):
        with guard(KEY, api_url=sandbox.url, interval=60):
            1 / 0  # noqa: B018


# -- other ways to start a session ------------------------------------------------------------------
def test_persistent_context_is_checked_tracked_and_closed(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, hanging: HangingPage, tmp_path: Any
) -> None:
    set_balance_when(hanging.reached, sandbox, KEY, 0)
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.3):
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), **launch)
                context.new_page().goto(hanging.url, timeout=60_000)
    assert isinstance(info.value.__cause__, PlaywrightError)
    assert_gone(marker)


def test_connect_over_cdp_is_checked_tracked_and_disconnected(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, tmp_path: Any
) -> None:
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    executable = launch.get("executable_path")
    if executable is None:
        with sync_playwright() as p:
            executable = p.chromium.executable_path
    proc = subprocess.Popen(
        [executable, "--headless", f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'cdp'}",
         *launch["args"], "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=1):
                    return True
            except OSError:
                return False

        assert wait_until(up, timeout=20), "chromium with a CDP port did not come up"
        with sync_playwright() as p:
            with pytest.raises(LowBalanceError) as info:
                with guard(KEY, api_url=sandbox.url, interval=0.3):
                    browser = p.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
                    page = browser.new_context().new_page()
                    threading.Timer(0.3, sandbox.set_balance, (KEY, 0)).start()
                    page.wait_for_timeout(60_000)
            assert isinstance(info.value.__cause__, PlaywrightError)
            assert not browser.is_connected()
    finally:
        proc.kill()
        proc.wait(10)
