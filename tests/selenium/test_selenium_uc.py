"""undetected-chromedriver under the guard, offline (Debian's chromedriver and Chromium).

Its ``Chrome`` subclasses Selenium's and starts the browser itself, before the session (the
guard's hook sees the session start through ``super().start_session``), and records the browser's
process id in ``browser_pid``: that is the process the guard kills on a stop.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_keys import KEY
from sel_support import (  # noqa: F401
    ARGS,
    CHROMEDRIVER,
    CHROMIUM,
    HangingPage,
    Processes,
    hanging_fixture,
    needs_chrome,
    nothing_left_behind_fixture,
    procs_fixture,
    set_balance_when,
    site_fixture,
    wait_until,
)
from selenium.common.exceptions import TimeoutException, WebDriverException

from vastcap_guard import LowBalanceError
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.selenium import guard
from vastcap_guard.site import LocalSite

try:
    import undetected_chromedriver as uc
except Exception as exc:  # not installed, or it cannot import on this Python (it uses distutils)
    pytest.skip(f"undetected-chromedriver is not usable here: {type(exc).__name__}: {exc}", allow_module_level=True)

pytestmark = [pytest.mark.browser, needs_chrome,
              pytest.mark.filterwarnings("ignore:.*getdefaultlocale:DeprecationWarning")]


def uc_chrome() -> Any:
    opts = uc.ChromeOptions()
    for arg in ARGS[1:]:  # headless=True below
        opts.add_argument(arg)
    return uc.Chrome(driver_executable_path=CHROMEDRIVER, browser_executable_path=CHROMIUM, headless=True,
                     options=opts)


def test_uc_start_after_a_stop_is_refused_and_cleaned_up(sandbox: Sandbox, site: LocalSite, procs: Processes) -> None:
    site.reset()
    with pytest.raises(LowBalanceError):
        with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
            sandbox.set_balance(KEY, 0)
            assert wait_until(lambda: g.tripped is not None)
            with pytest.raises(LowBalanceError):
                uc_chrome()  # its browser is up before the session: uc's own clean-up ends it
    assert site.request_count == 0
    procs.assert_gone()


def test_uc_stopped_while_loading_a_slow_page(sandbox: Sandbox, procs: Processes, hanging: HangingPage) -> None:
    set_balance_when(hanging.reached, sandbox, KEY, 0)
    with pytest.raises(LowBalanceError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.3):
            driver = uc_chrome()
            assert isinstance(driver.browser_pid, int)
            driver.set_page_load_timeout(20)
            driver.get(hanging.url)
    assert isinstance(info.value.__cause__, WebDriverException), repr(info.value.__cause__)
    assert not isinstance(info.value.__cause__, TimeoutException)  # ended by the stop, not the timeout
    procs.assert_gone()
