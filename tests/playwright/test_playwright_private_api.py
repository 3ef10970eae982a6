"""Loud failures when a Playwright release changes the private API the sync-API stop relies on.

The guard closes sync-API browsers from its poller thread with
``asyncio.run_coroutine_threadsafe(obj._impl_obj.close(reason=...), obj._loop)``
(``vastcap_guard/playwright/_private.py``). If one of these tests fails after a Playwright
upgrade, background stops of sync scripts no longer work: fix ``schedule_sync_close``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import pytest
from playwright.sync_api import sync_playwright
from pw_fixtures import (  # noqa: F401
    hanging_fixture,
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)
from pw_support import assert_gone

from vastcap_guard.playwright import _hooks
from vastcap_guard.playwright._private import PrivateApiChanged, schedule_sync_close

pytestmark = pytest.mark.browser


def test_sync_objects_carry_impl_and_loop(launch: dict[str, Any], marker: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(**launch)
        context = browser.new_context()
        for obj in (browser, context):
            assert hasattr(obj, "_impl_obj"), f"{type(obj).__name__} has no _impl_obj any more"
            assert isinstance(getattr(obj, "_loop", None), asyncio.AbstractEventLoop), (
                f"{type(obj).__name__}._loop is not Playwright's event loop any more"
            )
            close = obj._impl_obj.close
            assert inspect.iscoroutinefunction(close), "the impl close() is no longer a coroutine function"
            assert "reason" in inspect.signature(close).parameters, "the impl close() lost its reason"
        browser.close()
    assert_gone(marker)


def test_schedule_sync_close_from_another_thread_ends_a_pending_call(launch: dict[str, Any], marker: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(**launch)
        page = browser.new_page()
        outcome: list[object] = []
        timer = threading.Timer(0.3, lambda: outcome.append(schedule_sync_close(browser, "stop-test")))
        timer.start()
        with pytest.raises(Exception) as info:
            page.wait_for_timeout(60_000)
        timer.join()
        assert outcome and outcome[0] is not None, "the close was not scheduled"
        assert "stop-test" in str(info.value), f"the reason did not reach the pending call: {info.value}"
        assert_gone(marker)  # the browser process ended while Playwright still runs


def test_missing_private_attributes_raise_a_clear_error() -> None:
    class NotPlaywright:
        pass

    with pytest.raises(PrivateApiChanged):
        schedule_sync_close(NotPlaywright(), "x")


def test_the_hooked_methods_exist_in_both_apis() -> None:
    import playwright.async_api as a
    import playwright.sync_api as s

    for module, want_coroutine in ((s, False), (a, True)):
        for cls_name, methods in _hooks.HOOKED.items():
            cls = getattr(module, cls_name)
            for name in methods:
                method = getattr(cls, name, None)
                assert callable(method), f"{module.__name__}.{cls_name}.{name} is gone"
                assert inspect.iscoroutinefunction(method) is want_coroutine, f"{cls_name}.{name} changed kind"
