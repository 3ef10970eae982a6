"""patchright and rebrowser-playwright scripts under the guard, exactly like Playwright scripts.

Each fork ships its own module tree (``patchright.sync_api``, ``rebrowser_playwright.async_api``)
whose classes and errors are copies of Playwright's, not the same objects. These tests drive each
installed fork with a real headless Chromium: the guard checks and tracks its launches, contexts
and pages, a stop closes its browsers with the reason, the pending call fails at once and the
guarded code raises the guard's error chained from the *fork's* error.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from typing import Any

import pytest
from core_keys import KEY, LOW_KEY
from pw_fixtures import (  # noqa: F401
    hanging_fixture,
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)
from pw_support import assert_gone, browser_pids, chromium_descendants, wait_until

from vastcap_guard import LowBalanceError
from vastcap_guard.playwright import _flavors, _hooks, guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = pytest.mark.browser

FORKS = [name for name in _flavors.installed_names() if name != "playwright"]
if not FORKS:  # pragma: no cover - the test extra installs both forks
    pytest.skip("no Playwright fork installed (pip install patchright rebrowser-playwright)", allow_module_level=True)


def api(fork: str, kind: str) -> Any:
    return importlib.import_module(f"{fork}.{kind}_api")


def assert_the_forks_error(cause: BaseException | None, fork: str) -> None:
    """What the guard chained from is the fork's own error class, with the stop reason."""
    assert isinstance(cause, api(fork, "sync").Error), f"not a {fork} error: {cause!r}"
    assert type(cause).__module__.startswith(f"{fork}."), type(cause).__module__
    assert "vastcap_low_balance" in str(cause)


@pytest.fixture(params=FORKS)
def fork(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- sync API ------------------------------------------------------------------------------------
def test_preflight_refusal_starts_no_fork_browser(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, fork: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = api(fork, "sync")
    reached: list[str] = []
    original = sync.BrowserType.launch
    monkeypatch.setattr(sync.BrowserType, "launch",
                        lambda self, *a, **k: reached.append("launch") or original(self, *a, **k))
    ran: list[bool] = []

    @guard(LOW_KEY, api_url=sandbox.url, interval=0.5)
    def script() -> None:
        ran.append(True)
        with sync.sync_playwright() as p:
            p.chromium.launch(**launch).close()

    with pytest.raises(LowBalanceError):
        script()
    assert ran == [] and reached == []
    assert browser_pids(marker) == [] and chromium_descendants() == []


def test_a_stop_closes_a_fork_browser_and_chains_its_error(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite, fork: str
) -> None:
    sync = api(fork, "sync")
    reached_end: list[bool] = []
    hooked: list[bool] = []

    @guard(KEY, api_url=sandbox.url, interval=0.3)
    def script() -> None:
        hooked.append(hasattr(sync.BrowserType.launch, "__vastcap_guard_original__"))
        with sync.sync_playwright() as p:
            browser = p.chromium.launch(**launch)  # checked and tracked
            page = browser.new_context().new_page()
            page.goto(site.url)
            threading.Timer(0.3, sandbox.set_balance, (KEY, 0)).start()
            page.wait_for_timeout(60_000)  # only the guard can end this
            reached_end.append(True)

    with pytest.raises(LowBalanceError) as info:
        script()
    assert hooked == [True] and not hasattr(sync.BrowserType.launch, "__vastcap_guard_original__")
    assert reached_end == []
    assert info.value.balance == 0
    assert_the_forks_error(info.value.__cause__, fork)
    assert_gone(marker)


def test_contexts_and_pages_of_a_watched_fork_browser_are_tracked(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, fork: str
) -> None:
    """A browser launched before the guard is not the guard's; the context and the page's context
    opened inside it are, and only they are closed on a stop."""
    sync = api(fork, "sync")
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(**launch)
        with pytest.raises(LowBalanceError) as info:
            with guard(KEY, api_url=sandbox.url, interval=0.3):
                context = browser.new_context()
                page = browser.new_page()  # Browser.new_page: its own context
                waiting = context.new_page()
                threading.Timer(0.3, sandbox.set_balance, (KEY, 0)).start()
                waiting.wait_for_timeout(60_000)
        assert_the_forks_error(info.value.__cause__, fork)
        assert browser.is_connected()  # not the guard's
        with pytest.raises(sync.Error):
            context.new_page()  # closed by the guard
        with pytest.raises(sync.Error):
            page.goto("about:blank")  # its context too
        assert len(browser.contexts) == 0
        browser.close()
    assert_gone(marker)


def test_a_fork_launch_after_a_stop_is_refused(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, fork: str
) -> None:
    sync = api(fork, "sync")
    with sync.sync_playwright() as p:
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
        assert not browser.is_connected()
    assert_gone(marker)


def test_watch_takes_fork_objects(sandbox: Sandbox, launch: dict[str, Any], marker: str, fork: str) -> None:
    sync = api(fork, "sync")
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(**launch)  # outside the guard
        page = browser.new_page()
        with pytest.raises(LowBalanceError) as info:
            with guard(KEY, api_url=sandbox.url, interval=0.3) as g:
                assert g.watch(page) is page  # stands for its context
                threading.Timer(0.3, sandbox.set_balance, (KEY, 0)).start()
                page.wait_for_timeout(60_000)
        assert_the_forks_error(info.value.__cause__, fork)
        assert browser.is_connected() and browser.contexts == []
        browser.close()
    assert_gone(marker)


# -- async API -----------------------------------------------------------------------------------
def test_an_async_fork_script_is_stopped(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite, fork: str
) -> None:
    aapi = api(fork, "async")
    reached_end: list[bool] = []

    @guard(KEY, api_url=sandbox.url, interval=0.3)
    async def script() -> None:
        async with aapi.async_playwright() as p:
            browser = await p.chromium.launch(**launch)
            page = await (await browser.new_context()).new_page()
            await page.goto(site.url)
            asyncio.get_running_loop().call_later(0.3, sandbox.set_balance, KEY, 0)
            await page.wait_for_timeout(60_000)
            reached_end.append(True)

    async def main() -> LowBalanceError:
        with pytest.raises(LowBalanceError) as info:
            await script()
        return info.value

    error = asyncio.run(main())
    assert reached_end == []
    assert_the_forks_error(error.__cause__, fork)
    assert_gone(marker)


def test_an_async_fork_launch_after_a_stop_is_refused(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, fork: str
) -> None:
    aapi = api(fork, "async")

    async def main() -> None:
        async with aapi.async_playwright() as p:
            with pytest.raises(LowBalanceError):
                async with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                    browser = await p.chromium.launch(**launch)
                    sandbox.set_balance(KEY, 0)
                    for _ in range(300):
                        if g.tripped is not None and not browser.is_connected():
                            break
                        await asyncio.sleep(0.05)
                    assert g.tripped is not None and not browser.is_connected()
                    before = browser_pids(marker)
                    with pytest.raises(LowBalanceError):
                        await p.chromium.launch(**launch)
                    assert set(browser_pids(marker)) <= set(before)

    asyncio.run(main())
    assert_gone(marker)


def test_hooks_cover_every_flavor_while_a_guard_is_active(sandbox: Sandbox) -> None:
    classes = [f.api(kind).BrowserType for f in _flavors.available() for kind in ("sync", "async")]
    assert len(classes) == 2 * len(_flavors.installed_names())
    with guard(KEY, api_url=sandbox.url, interval=60):
        assert all(hasattr(c.launch, "__vastcap_guard_original__") for c in classes)
        assert _hooks.installed()
    assert not any(hasattr(c.launch, "__vastcap_guard_original__") for c in classes)
