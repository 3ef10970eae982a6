"""The guard around Playwright's async API, driving a real headless Chromium (``asyncio.run`` per test)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from core_keys import BAD_KEY, DISABLED_KEY, KEY, LOW_KEY
from playwright.async_api import BrowserType, async_playwright
from playwright.async_api import Error as PlaywrightError
from pw_fixtures import (  # noqa: F401
    hanging_fixture,
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)
from pw_support import HangingPage, assert_gone, browser_pids, chromium_descendants, set_balance_when

from vastcap_guard import AccountDisabledError, GuardError, InvalidKeyError, LowBalanceError
from vastcap_guard.playwright import guard
from vastcap_guard.poller import active_pollers
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = pytest.mark.browser

REFUSALS = [
    (BAD_KEY, InvalidKeyError),
    (DISABLED_KEY, AccountDisabledError),
    (LOW_KEY, LowBalanceError),
]


def only_this_task() -> None:
    """No task of the guard's is left on the loop (Playwright's own may run while it is open)."""

    def ours(task: asyncio.Task[Any]) -> bool:
        code = getattr(task.get_coro(), "cr_code", None)
        return "vastcap" in task.get_name() or "vastcap_guard" in getattr(code, "co_filename", "")

    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and ours(t)]
    assert left == [], f"tasks left behind: {left}"


async def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def launch_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = BrowserType.launch

    async def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("launch")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(BrowserType, "launch", spy)
    return calls


# -- pre-flight ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "error"), REFUSALS, ids=["invalid-key", "disabled", "low-balance"])
def test_preflight_refusal_launches_nothing(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, launch_spy: list[str], key: str, error: type[GuardError]
) -> None:
    ran: list[str] = []

    @guard(key, api_url=sandbox.url, interval=0.5)
    async def decorated() -> None:
        ran.append("decorated")
        async with async_playwright() as p:
            await (await p.chromium.launch(**launch)).close()

    async def main() -> None:
        with pytest.raises(error) as info:
            await decorated()
        if error is LowBalanceError:
            assert info.value.balance == Decimal("0.0005")  # type: ignore[attr-defined]
        with pytest.raises(error):
            async with guard(key, api_url=sandbox.url, interval=0.5):
                ran.append("block")
        only_this_task()

    asyncio.run(main())
    assert ran == [] and launch_spy == []
    assert browser_pids(marker) == [] and chromium_descendants() == []


def test_preflight_does_not_block_the_loop(sandbox: Sandbox) -> None:
    """A slow getBalance at pre-flight leaves the loop free for other tasks."""
    sandbox.fault("getBalance", "latency", delay=0.5, times=1)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def main() -> None:
        t = asyncio.create_task(ticker())
        async with guard(KEY, api_url=sandbox.url, interval=60):
            pass
        t.cancel()

    asyncio.run(main())
    assert len(ticks) > 5  # the ticker ran while the pre-flight waited


# -- stopping a busy script ------------------------------------------------------------------------
def test_balance_zero_while_waiting_on_a_page_stops_the_script(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, hanging: HangingPage
) -> None:
    set_balance_when(hanging.reached, sandbox, KEY, 0)
    reached_end: list[bool] = []

    @guard(KEY, api_url=sandbox.url, interval=0.5)
    async def script() -> None:
        async with async_playwright() as p:
            browser = await p.chromium.launch(**launch)
            page = await browser.new_page()
            await page.goto(hanging.url, timeout=60_000)  # never loads
            reached_end.append(True)

    async def main() -> LowBalanceError:
        with pytest.raises(LowBalanceError) as info:
            await script()
        only_this_task()
        return info.value

    error = asyncio.run(main())
    assert reached_end == []
    assert error.balance == 0
    assert isinstance(error.__cause__, PlaywrightError)
    assert_gone(marker)


def test_balance_zero_while_navigating_stops_the_loop(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite
) -> None:
    visited = 0

    async def main() -> LowBalanceError:
        nonlocal visited
        async with async_playwright() as p:
            with pytest.raises(LowBalanceError) as info:
                async with guard(KEY, api_url=sandbox.url, interval=0.5) as g:
                    browser = await p.chromium.launch(**launch)
                    context = await browser.new_context()
                    page = await context.new_page()
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        await page.goto(site.page_url(visited % site.pages))
                        visited += 1
                        if visited == 5:
                            sandbox.set_balance(KEY, 0)
            assert g.tripped is info.value
            assert not browser.is_connected()
            only_this_task()
            return info.value

    error = asyncio.run(main())
    assert error.balance == 0
    assert isinstance(error.__cause__, PlaywrightError)
    assert visited >= 5
    assert_gone(marker)
    seen = site.request_count
    time.sleep(0.3)
    assert site.request_count == seen


def test_stop_while_not_in_playwright_raises_at_exit(sandbox: Sandbox, launch: dict[str, Any], marker: str) -> None:
    async def main() -> None:
        async with async_playwright() as p:
            with pytest.raises(LowBalanceError) as info:
                async with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                    browser = await p.chromium.launch(**launch)
                    sandbox.set_balance(KEY, 0)
                    assert await wait_for(lambda: g.tripped is not None)
                    # the guard's task closed the browser while we were busy elsewhere
                    assert await wait_for(lambda: not browser.is_connected())
            assert info.value.__cause__ is None
            only_this_task()

    asyncio.run(main())
    assert_gone(marker)


def test_watch_closes_a_context_made_outside_the_guard(
    sandbox: Sandbox, launch: dict[str, Any], marker: str
) -> None:
    async def main() -> None:
        async with async_playwright() as p:
            browser = await p.chromium.launch(**launch)
            context = await browser.new_context()
            page = await context.new_page()
            with pytest.raises(LowBalanceError) as info:
                async with guard(KEY, api_url=sandbox.url, interval=0.3) as g:
                    assert g.watch(context) is context
                    asyncio.get_running_loop().call_later(0.5, sandbox.set_balance, KEY, 0)
                    await page.wait_for_timeout(60_000)
            assert isinstance(info.value.__cause__, PlaywrightError)
            assert browser.is_connected()  # only the watched context was the guard's
            await browser.close()

    asyncio.run(main())
    assert_gone(marker)


# -- what is not stopped -------------------------------------------------------------------------
def test_transient_failures_below_max_failures_do_not_stop(
    sandbox: Sandbox, launch: dict[str, Any], site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vastcap_guard")

    def recovered() -> bool:
        calls = sandbox.calls("getBalance")
        faulted = [i for i, c in enumerate(calls) if c.fault]
        return len(faulted) == 6 and len(calls) - faulted[-1] > 2

    async def main() -> Any:
        async with guard(KEY, api_url=sandbox.url, interval=0.3, max_failures=3) as g:
            sandbox.fault("getBalance", "status", status=503, times=6)
            async with async_playwright() as p:
                browser = await p.chromium.launch(**launch)
                page = await browser.new_page()
                deadline = time.monotonic() + 60
                n = 0
                while not recovered() and time.monotonic() < deadline:
                    await page.goto(site.page_url(n % site.pages))
                    n += 1
                await browser.close()
        return g

    g = asyncio.run(main())
    assert recovered(), "the faults never happened"
    assert g.tripped is None and g.snapshot()["check_failures"] == 2
    failures = [r for r in caplog.records if "balance check failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.levelno == logging.WARNING for r in failures)
    assert KEY not in caplog.text


def test_a_task_outside_the_guard_is_untouched(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite
) -> None:
    """Two tasks share a loop, a Playwright and the hooked classes; only the guarded one is stopped."""
    events: dict[str, Any] = {}

    async def main() -> None:
        stopped, outside_done = asyncio.Event(), asyncio.Event()
        async with async_playwright() as p:

            async def guarded() -> None:
                async with guard(KEY, api_url=sandbox.url, interval=0.2) as g:
                    browser = await p.chromium.launch(**launch)
                    events["inside"] = browser
                    page = await browser.new_page()
                    sandbox.set_balance(KEY, 0)
                    with pytest.raises(PlaywrightError):
                        await page.wait_for_timeout(60_000)
                    assert g.tripped is not None
                    stopped.set()
                    await outside_done.wait()  # stay inside the stopped guard: hooks still installed

            async def unguarded() -> None:
                await stopped.wait()
                # the guard has stopped and its hooks are active, but this task is not inside it:
                # its launch is neither refused nor tracked
                browser = await p.chromium.launch(**launch)
                page = await browser.new_page()
                await page.goto(site.url)
                assert await page.title() == "Demo site"
                events["outside_ok"] = True
                outside_done.set()
                await asyncio.sleep(0.5)  # several background readings of a zero balance later
                await page.goto(site.page_url(1))
                assert browser.is_connected()
                await browser.close()

            async def expect_stop() -> None:
                with pytest.raises(LowBalanceError):
                    await guarded()

            await asyncio.gather(expect_stop(), unguarded())
            assert not events["inside"].is_connected()

    asyncio.run(main())
    assert events.get("outside_ok") is True
    assert_gone(marker)


def test_scripts_of_one_key_share_one_poll_per_interval(sandbox: Sandbox) -> None:
    interval = 0.5

    async def script(seconds: float) -> None:
        async with guard(KEY, api_url=sandbox.url, interval=interval):
            assert active_pollers() == 1
            await asyncio.sleep(seconds)

    async def main() -> float:
        started = time.monotonic()
        await asyncio.gather(script(3.0), script(3.0), script(3.0))
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    calls = sandbox.call_count("getBalance")
    # one poll per interval for all three (three separate pollers would make ~3x as many)
    assert 3 <= calls <= elapsed / interval + 4, calls


def test_guard_in_a_worker_thread_with_its_own_loop(sandbox: Sandbox) -> None:
    """Scopes in other threads are independent (contextvars are per thread)."""
    results: list[str] = []

    def worker() -> None:
        async def main() -> None:
            async with guard(KEY, api_url=sandbox.url, interval=60) as g:
                results.append(str(g.balance))

        asyncio.run(main())

    t = threading.Thread(target=worker)
    t.start()
    t.join(30)
    assert results == ["10.25"]
