"""camoufox under the guard: what can be tested without its browser.

camoufox (``pip install camoufox``) launches its Firefox build through Playwright's own
``playwright.firefox.launch`` / ``launch_persistent_context``, so the guard's hooks on Playwright's
classes see it; its ``Camoufox`` context manager subclasses ``sync_playwright()``'s class. Its
browser is downloaded at first use, which cannot happen here: these tests drive camoufox's own
launch helpers (``NewBrowser``, ``AsyncNewBrowser``, ``Camoufox``) with launch options that point at
no browser, and its instance-level patching (``new_page`` / ``new_context`` replaced on the browser
object after launch) on a real Chromium. camoufox requires playwright<1.63 (pip picks 1.62):
scripts/test.sh runs this module in a virtualenv of its own, ``.venv-camoufox``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from core_keys import KEY
from pw_fixtures import (  # noqa: F401
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
)
from pw_support import assert_gone, wait_until

from vastcap_guard import LowBalanceError
from vastcap_guard.sandbox import Sandbox

camoufox_sync = pytest.importorskip("camoufox.sync_api", reason="camoufox is not installed (pip install camoufox)")
camoufox_async = pytest.importorskip("camoufox.async_api")
camoufox_utils = pytest.importorskip("camoufox.utils")

from playwright.async_api import BrowserType as AsyncBrowserType  # noqa: E402
from playwright.sync_api import BrowserType, sync_playwright  # noqa: E402
from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api._context_manager import PlaywrightContextManager  # noqa: E402

from vastcap_guard.playwright import guard  # noqa: E402

pytestmark = pytest.mark.browser

#: launch options for camoufox's helpers: a browser that is not there
NO_BROWSER = {"executable_path": "/nonexistent/camoufox-bin", "headless": True}


@pytest.fixture
def reached(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every call that gets past the guard's hooks to Playwright's own launch methods:
    (browser type, method)."""
    calls: list[tuple[str, str]] = []
    for cls in (BrowserType, AsyncBrowserType):
        for name in ("launch", "launch_persistent_context"):
            original = getattr(cls, name)

            def spy(self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                calls.append((self.name, _name))
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(cls, name, spy)
    return calls


@pytest.mark.parametrize("persistent", [False, True], ids=["launch", "persistent-context"])
def test_camoufox_launches_are_checked_by_the_guard(
    sandbox: Sandbox, reached: list[tuple[str, str]], tmp_path: Path, persistent: bool
) -> None:
    options = {**NO_BROWSER, **({"user_data_dir": str(tmp_path / "profile")} if persistent else {})}
    method = "launch_persistent_context" if persistent else "launch"
    with sync_playwright() as p:
        with pytest.raises(LowBalanceError):
            with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                # funded: admitted, and camoufox's Firefox launch reaches Playwright (no browser there)
                with pytest.raises(PlaywrightError):
                    camoufox_sync.NewBrowser(p, from_options=options, persistent_context=persistent)
                assert reached == [("firefox", method)]
                # emptied: the guard refuses the same launch before it reaches Playwright
                sandbox.set_balance(KEY, 0)
                assert wait_until(lambda: g.tripped is not None)
                camoufox_sync.NewBrowser(p, from_options=options, persistent_context=persistent)
    assert reached == [("firefox", method)]


def test_the_camoufox_context_manager_is_refused_before_a_browser_starts(
    sandbox: Sandbox, reached: list[tuple[str, str]]
) -> None:
    """``with Camoufox()`` starts Playwright, then launches through it: refused, it tears its
    Playwright down through sync_playwright()'s __exit__ (which the guard hooks)."""
    with pytest.raises(LowBalanceError):
        with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
            assert issubclass(camoufox_sync.Camoufox, PlaywrightContextManager)
            assert hasattr(PlaywrightContextManager.__exit__, "__vastcap_guard_original__")
            sandbox.set_balance(KEY, 0)
            assert wait_until(lambda: g.tripped is not None)
            with camoufox_sync.Camoufox(from_options=NO_BROWSER):
                pytest.fail("camoufox started under a stopped guard")
    assert reached == []


def test_camoufox_async_launches_are_checked_by_the_guard(
    sandbox: Sandbox, reached: list[tuple[str, str]]
) -> None:
    from playwright.async_api import Error as AsyncPlaywrightError
    from playwright.async_api import async_playwright

    async def main() -> None:
        async with async_playwright() as p:
            with pytest.raises(LowBalanceError):
                async with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                    with pytest.raises(AsyncPlaywrightError):
                        await camoufox_async.AsyncNewBrowser(p, from_options=NO_BROWSER)
                    assert reached == [("firefox", "launch")]
                    sandbox.set_balance(KEY, 0)
                    for _ in range(300):
                        if g.tripped is not None:
                            break
                        await asyncio.sleep(0.05)
                    await camoufox_async.AsyncNewBrowser(p, from_options=NO_BROWSER)
            assert reached == [("firefox", "launch")]

    asyncio.run(main())


def test_camoufox_instance_patches_keep_the_guard_when_launched_inside_it(
    sandbox: Sandbox, launch: dict[str, Any], marker: str
) -> None:
    """camoufox replaces ``new_page`` / ``new_context`` on the browser object after launch, wrapping
    the bound methods it finds. Launched inside the guard, those are the guard's hooks: its new
    pages are still checked and tracked. Patched before the guard existed, they are not (use
    ``g.watch(browser)``)."""
    with sync_playwright() as p:
        before = camoufox_utils.attach_desktop_only_warning(p.chromium.launch(**launch))
        with pytest.raises(LowBalanceError) as info:
            with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                inside = camoufox_utils.attach_desktop_only_warning(p.chromium.launch(**launch))
                assert "new_page" in vars(inside)  # patched on the instance, as camoufox does
                page = inside.new_page()  # through camoufox's wrapper, then the guard's hook
                threading.Timer(0.3, sandbox.set_balance, (KEY, 0)).start()
                with pytest.raises(PlaywrightError):
                    page.wait_for_timeout(60_000)  # its context was tracked: closed on the stop
                with pytest.raises(LowBalanceError):
                    inside.new_page()  # refused
                unseen = before.new_page()  # patched before the guard: not seen, not refused
                assert g.tripped is not None
        assert info.value.reason == "vastcap_low_balance"
        assert before.is_connected() and not unseen.is_closed()
        before.close()
    assert_gone(marker)
