"""Loud failures when a release of Playwright or of a fork changes what the guard relies on.

The guard closes sync-API browsers from its poller thread with
``asyncio.run_coroutine_threadsafe(obj._impl_obj.close(reason=...), obj._loop)``, lets that close
finish in the script's thread through ``obj._sync`` (``vastcap_guard/playwright/_private.py``),
and wraps each flavor's session starts and ``sync_playwright()``'s ``__exit__``
(``_hooks.py``). Every installed flavor is checked: Playwright, patchright, rebrowser-playwright.
If one of these tests fails after an upgrade, background stops of sync scripts no longer work
with that flavor: fix ``_private.py`` or ``_hooks.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import threading
import time
from typing import Any

import pytest
from pw_fixtures import (  # noqa: F401
    hanging_fixture,
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)
from pw_support import assert_gone

from vastcap_guard.playwright import _flavors, _hooks
from vastcap_guard.playwright._private import PrivateApiChanged, drain_sync_closes, schedule_sync_close

pytestmark = pytest.mark.browser

FLAVORS = _flavors.installed_names()


def sync_api(flavor: str) -> Any:
    return importlib.import_module(f"{flavor}.sync_api")


def test_every_installed_flavor_is_found() -> None:
    found = [f.name for f in _flavors.available()]
    assert found == FLAVORS and found, "a flavor is installed but its APIs cannot be imported"
    for flavor in _flavors.available():
        assert flavor.sync_api.__name__ == f"{flavor.name}.sync_api"
        assert flavor.async_api.__name__ == f"{flavor.name}.async_api"


def test_a_folder_named_like_a_flavor_is_not_a_flavor(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project's own ``playwright/`` folder on sys.path (a namespace package) is not Playwright;
    the test suite's ``tests/playwright`` is one, in the fork-only virtualenv."""
    (tmp_path / "vastcap_fake_flavor").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_flavors.DISTRIBUTIONS, "vastcap_fake_flavor", "vastcap-fake-flavor")
    assert "vastcap_fake_flavor" not in _flavors.installed_names()
    (tmp_path / "vastcap_fake_flavor" / "__init__.py").write_text("")
    importlib.invalidate_caches()
    assert "vastcap_fake_flavor" in _flavors.installed_names()  # a real package counts


@pytest.mark.parametrize("flavor", FLAVORS)
def test_sync_objects_carry_impl_loop_and_sync(launch: dict[str, Any], marker: str, flavor: str) -> None:
    with sync_api(flavor).sync_playwright() as p:
        browser = p.chromium.launch(**launch)
        context = browser.new_context()
        for obj in (browser, context):
            assert hasattr(obj, "_impl_obj"), f"{type(obj).__name__} has no _impl_obj any more"
            assert isinstance(getattr(obj, "_loop", None), asyncio.AbstractEventLoop), (
                f"{type(obj).__name__}._loop is not Playwright's event loop any more"
            )
            assert callable(getattr(obj, "_sync", None)), f"{type(obj).__name__}._sync (runs the loop) is gone"
            close = obj._impl_obj.close
            assert inspect.iscoroutinefunction(close), "the impl close() is no longer a coroutine function"
            assert "reason" in inspect.signature(close).parameters, "the impl close() lost its reason"
        browser.close()
    assert_gone(marker)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_schedule_sync_close_from_another_thread_ends_a_pending_call(
    launch: dict[str, Any], marker: str, flavor: str
) -> None:
    api = sync_api(flavor)
    with api.sync_playwright() as p:
        browser = p.chromium.launch(**launch)
        page = browser.new_page()
        outcome: list[concurrent.futures.Future[Any] | None] = []
        timer = threading.Timer(0.3, lambda: outcome.append(schedule_sync_close(browser, "stop-test")))
        timer.start()
        with pytest.raises(api.Error) as info:
            page.wait_for_timeout(60_000)
        timer.join()
        future = outcome[0] if outcome else None
        assert future is not None, "the close was not scheduled"
        assert "stop-test" in str(info.value), f"the reason did not reach the pending call: {info.value}"
        # the drain runs Playwright's loop here until the close itself has finished
        assert drain_sync_closes(browser, [future], time.monotonic() + 15)
        assert future.done() and not future.cancelled() and future.exception() is None
        assert_gone(marker)  # the browser process ended while Playwright still runs


def test_missing_private_attributes_raise_a_clear_error() -> None:
    class NotPlaywright:
        pass

    with pytest.raises(PrivateApiChanged):
        schedule_sync_close(NotPlaywright(), "x")
    # nothing to drain on something that is not Playwright: no error, no wait
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    assert drain_sync_closes(NotPlaywright(), [done], time.monotonic() + 1) is False


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_hooked_methods_exist_in_both_apis(flavor: str) -> None:
    s = importlib.import_module(f"{flavor}.sync_api")
    a = importlib.import_module(f"{flavor}.async_api")
    for module, want_coroutine in ((s, False), (a, True)):
        for cls_name, methods in _hooks.HOOKED.items():
            cls = getattr(module, cls_name)
            for name in methods:
                method = getattr(cls, name, None)
                assert callable(method), f"{module.__name__}.{cls_name}.{name} is gone"
                assert inspect.iscoroutinefunction(method) is want_coroutine, f"{cls_name}.{name} changed kind"
    flavor_obj = next(f for f in _flavors.available() if f.name == flavor)
    manager = flavor_obj.sync_context_manager()
    assert manager is not None, f"{flavor}.sync_api._context_manager.PlaywrightContextManager moved"
    assert "__exit__" in manager.__dict__ and "start" in manager.__dict__
    assert isinstance(s.sync_playwright(), manager), "sync_playwright() is no longer that class"
    assert "_exit_was_called" in inspect.getsource(manager.__init__)
    hooked = {(cls, name) for cls, name, _ in _hooks.targets()}
    assert (manager, "__exit__") in hooked and (s.BrowserType, "launch") in hooked and (a.Browser, "new_page") in hooked
