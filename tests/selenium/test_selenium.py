"""The guard around Selenium scripts, driving real chromedriver and headless Chromium sessions
(local ``webdriver.Chrome`` and ``webdriver.Remote`` against a chromedriver the tests start)."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from core_keys import BAD_KEY, DISABLED_KEY, KEY, LOW_KEY
from sel_support import (  # noqa: F401
    HangingPage,
    Processes,
    RemoteEnd,
    chrome,
    hanging_fixture,
    needs_chrome,
    nothing_left_behind_fixture,
    procs_fixture,
    remote_end_fixture,
    set_balance_when,
    site_fixture,
    wait_until,
)
from selenium.common.exceptions import InvalidSessionIdException, TimeoutException, WebDriverException
from selenium.webdriver.remote.webdriver import WebDriver

from vastcap_guard import AccountDisabledError, GuardError, InvalidKeyError, LowBalanceError
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.selenium import SeleniumGuard, guard
from vastcap_guard.site import LocalSite

pytestmark = [pytest.mark.browser, needs_chrome]

REFUSALS = [
    (BAD_KEY, InvalidKeyError),
    (DISABLED_KEY, AccountDisabledError),
    (LOW_KEY, LowBalanceError),
]


def assert_one_clear_stop_line(caplog: pytest.LogCaptureFixture, err: GuardError, g: SeleniumGuard) -> None:
    """One ERROR line from the guard, no traceback, no urllib3 retry warning, the key nowhere."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    assert errors[0].name == "vastcap_guard.selenium" and f"[{err.reason}]" in line and "\n" not in line
    assert "Selenium script" in line
    noisy = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3") and r.levelno >= logging.WARNING]
    assert noisy == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text
    for text in (caplog.text, str(err), repr(err), repr(g), str(g.snapshot())):
        assert KEY not in text


# -- pre-flight ------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["decorator", "with"])
@pytest.mark.parametrize(("key", "error"), REFUSALS, ids=["invalid-key", "disabled", "low-balance"])
def test_preflight_refusal_starts_no_driver(
    sandbox: Sandbox, site: LocalSite, procs: Processes, key: str, error: type[GuardError], form: str
) -> None:
    site.reset()
    ran: list[bool] = []
    g = guard(key, api_url=sandbox.url, interval=0.5)

    def body() -> None:
        ran.append(True)
        driver = chrome()
        driver.get(site.url)
        driver.quit()

    with pytest.raises(error) as info:
        if form == "decorator":
            g(body)()
        else:
            with g:
                body()
    assert ran == [] and site.request_count == 0
    assert procs.live() == []
    assert sandbox.call_count("getBalance") == 1
    assert g.snapshot()["tripped"] == info.value.reason
    assert key not in str(info.value) and key not in repr(info.value)


# -- stopping a running script ---------------------------------------------------------------------
def test_stop_while_loading_a_slow_page(
    sandbox: Sandbox, procs: Processes, hanging: HangingPage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    set_balance_when(hanging.reached, sandbox, KEY, 0)
    reached_end: list[bool] = []
    g = guard(KEY, api_url=sandbox.url, interval=0.3)

    @g
    def script() -> None:
        driver = chrome()
        driver.set_page_load_timeout(20)
        try:
            driver.get(hanging.url)  # never loads: only the guard (or the timeout) can end this
            reached_end.append(True)
        finally:
            driver.quit()  # the script's own clean-up runs as usual

    with pytest.raises(LowBalanceError) as info:
        script()
    assert reached_end == []
    assert info.value.balance == 0 and g.tripped is info.value
    assert isinstance(info.value.__cause__, WebDriverException), repr(info.value.__cause__)
    assert not isinstance(info.value.__cause__, TimeoutException)  # ended by the stop, not the timeout
    procs.assert_gone()
    assert_one_clear_stop_line(caplog, info.value, g)


def test_stop_while_sleeping_the_next_call_fails(
    sandbox: Sandbox, site: LocalSite, procs: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
            driver = chrome()
            driver.get(site.page_url(1))
            sandbox.set_balance(KEY, 0)
            deadline = time.monotonic() + 30
            while g.tripped is None and time.monotonic() < deadline:
                time.sleep(0.05)  # busy outside Selenium
            seen = site.request_count
            driver.get(site.page_url(2))
            pytest.fail("the next call on a stopped driver went through")
    assert isinstance(info.value.__cause__, InvalidSessionIdException), repr(info.value.__cause__)
    assert site.request_count == seen
    procs.assert_gone()  # the guard quit the driver when the block ended
    with pytest.raises(LowBalanceError):
        driver.get(site.page_url(3))  # still refused, without a request
    driver.quit()  # a script's clean-up after the block: no error, no retries
    assert site.request_count == seen
    assert_one_clear_stop_line(caplog, info.value, g)


def test_a_session_start_after_a_stop_is_refused(
    sandbox: Sandbox, site: LocalSite, procs: Processes, remote_end: RemoteEnd
) -> None:
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
            driver = chrome()
            sandbox.set_balance(KEY, 0)
            assert wait_until(lambda: g.tripped is not None)
            before, seen = set(procs.live()), site.request_count
            with pytest.raises(LowBalanceError):
                chrome()
            with pytest.raises(LowBalanceError):
                remote_end.remote()
            assert wait_until(lambda: set(procs.live()) <= before), "a refused start left a process"
            driver.get(site.url)
    assert isinstance(info.value.__cause__, WebDriverException)
    assert site.request_count == seen
    procs.assert_gone()


def test_drivers_outside_the_scope_are_untouched(sandbox: Sandbox, site: LocalSite, procs: Processes) -> None:
    original = WebDriver.__dict__["start_session"]
    outside = chrome()  # before the guard: not checked, not watched
    in_thread: list[Any] = []
    try:
        with pytest.raises(LowBalanceError):
            with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                assert WebDriver.__dict__["start_session"] is not original  # hooked while a guard runs
                # a plain thread does not run in the guard's context: its driver is not the guard's
                t = threading.Thread(target=lambda: in_thread.append(chrome()))
                t.start()
                t.join()
                inside = chrome()
                sandbox.set_balance(KEY, 0)
                assert wait_until(lambda: g.tripped is not None)
        assert WebDriver.__dict__["start_session"] is original
        with pytest.raises(GuardError):
            inside.get(site.url)
        for driver in (outside, in_thread[0]):
            assert "execute" not in driver.__dict__
            driver.get(site.url)
            assert driver.title == "Demo site"
        calls = sandbox.call_count("getBalance")
        later = chrome()  # after the guard: no check
        later.get(site.url)
        later.quit()
        assert sandbox.call_count("getBalance") == calls
    finally:
        for driver in (outside, *in_thread):
            driver.quit()
    procs.assert_gone()


def test_watch_stops_a_driver_made_outside(
    sandbox: Sandbox, procs: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    driver = chrome()
    driver.set_script_timeout(20)
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.3) as g:
            assert g.watch(driver) is driver
            threading.Timer(0.5, sandbox.set_balance, (KEY, 0)).start()
            # a minute-long script: only the guard (or the script timeout) can end it
            driver.execute_async_script("setTimeout(arguments[arguments.length - 1], 60000)")
    assert isinstance(info.value.__cause__, WebDriverException), repr(info.value.__cause__)
    assert not isinstance(info.value.__cause__, TimeoutException)
    procs.assert_gone()
    assert_one_clear_stop_line(caplog, info.value, g)


def test_a_run_that_ends_normally_leaves_its_drivers_alone(
    sandbox: Sandbox, site: LocalSite, procs: Processes
) -> None:
    with guard(KEY, api_url=sandbox.url, interval=60) as g:
        driver = chrome()
        assert "execute" in driver.__dict__  # watched
    try:
        assert g.tripped is None and "execute" not in driver.__dict__
        driver.get(site.url)
        assert driver.title == "Demo site"
    finally:
        driver.quit()
    procs.assert_gone()


def test_ensure_funds_and_the_run_state(sandbox: Sandbox, site: LocalSite, procs: Processes,
                                        remote_end: RemoteEnd) -> None:
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=60) as g:
            local = chrome()
            remote = remote_end.remote()
            assert sandbox.call_count("getBalance") == 1  # both starts reused the pre-flight reading
            assert g.balance == Decimal("10.25") and g.forecast.state == "unknown"
            assert g.ensure_funds("0.25") == Decimal("10.00")
            g.ensure_funds("10")  # more than is left: refused, and the drivers stop
    snap = g.snapshot()
    assert snap["tripped"] == "vastcap_low_balance" and snap["checks"] == 1
    for driver in (local, remote):
        with pytest.raises(LowBalanceError):
            driver.get(site.url)
    assert info.value is g.tripped
    procs.assert_gone()


# -- webdriver.Remote ------------------------------------------------------------------------------
def test_remote_session_is_checked_watched_and_ended(
    sandbox: Sandbox, site: LocalSite, procs: Processes, remote_end: RemoteEnd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
            driver = remote_end.remote()
            driver.get(site.url)
            sandbox.set_balance(KEY, 0)
            assert wait_until(lambda: g.tripped is not None)
            seen = site.request_count
            driver.get(site.page_url(3))
    assert isinstance(info.value.__cause__, InvalidSessionIdException), repr(info.value.__cause__)
    assert site.request_count == seen
    procs.assert_gone()  # the session's browser (the remote end itself started before the test)
    assert remote_end.up()  # the remote end is not the guard's: it keeps running
    driver.quit()  # the script's own quit: answered without a request
    assert_one_clear_stop_line(caplog, info.value, g)


def test_a_remote_command_in_flight_runs_to_its_end_then_the_next_fails(
    sandbox: Sandbox, procs: Processes, remote_end: RemoteEnd, hanging: HangingPage
) -> None:
    """Documented: a Remote session can only be quit, which waits for the command in flight."""
    set_balance_when(hanging.reached, sandbox, KEY, 0)
    returned: list[bool] = []
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
            driver = remote_end.remote()
            driver.set_page_load_timeout(60)

            def release_after_the_stop() -> None:
                if wait_until(lambda: g.tripped is not None, 30):
                    hanging.release.set()  # the page finishes loading only after the stop

            threading.Thread(target=release_after_the_stop, daemon=True).start()
            driver.get(hanging.url)
            returned.append(True)
            driver.title  # noqa: B018
    assert returned == [True]
    assert isinstance(info.value.__cause__, InvalidSessionIdException), repr(info.value.__cause__)
    procs.assert_gone()
