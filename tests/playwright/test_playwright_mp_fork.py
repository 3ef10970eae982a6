"""A worker process forked inside a guarded scope (``multiprocessing``, fork start method).

Issue 15, defect 1: the child inherits the parent's scope (its context variables), hooks and run,
but not its poller thread, nor the parent's event loop. The child must get its own poller, which
reads the balance afresh, and decide on its own: with money, its browser starts and works with no
false stop and no failed check; with an account emptied after the parent's pre-flight, its launch is
refused with ``LowBalanceError`` and no browser starts in it, whatever the parent last read.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.queues
import time
from typing import Any

import pytest
from core_keys import KEY
from playwright.async_api import async_playwright
from playwright.sync_api import sync_playwright
from pw_fixtures import (  # noqa: F401
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)
from pw_support import assert_gone, chromium_descendants

from vastcap_guard import GuardError, LowBalanceError
from vastcap_guard.playwright import PlaywrightGuard, guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = pytest.mark.browser

FORK = multiprocessing.get_context("fork")
INTERVAL = 0.3
#: how long the funded child browses: several of its own checks
BROWSE_FOR = 8 * INTERVAL


def child_report(g: PlaywrightGuard, out: dict[str, Any]) -> dict[str, Any]:
    snap = g.snapshot()
    out.update(tripped=snap["tripped"], checks=snap["checks"], failures=snap["check_failures"],
               balance=str(snap["balance"]), chromium_left=chromium_descendants())
    return out


def sync_child(g: PlaywrightGuard, launch: dict[str, Any], site_url: str, queue: multiprocessing.queues.Queue[Any]) -> None:
    """In the forked child: a sync Playwright worker, in the scope it inherited."""
    out: dict[str, Any] = {"loads": 0, "checks_at_fork": g.snapshot()["checks"]}
    try:
        with sync_playwright() as p:
            out["launching"] = True
            browser = p.chromium.launch(**launch)
            out["launched"] = True
            page = browser.new_context().new_page()
            deadline = time.monotonic() + BROWSE_FOR
            while time.monotonic() < deadline:
                page.goto(site_url)
                out["loads"] += 1
            browser.close()
        out["error"] = None
    except GuardError as exc:
        out["error"] = type(exc).__name__
        out["chromium_after_refusal"] = chromium_descendants()
    except Exception as exc:
        out["error"] = repr(exc)
    queue.put(child_report(g, out))


def async_child(g: PlaywrightGuard, launch: dict[str, Any], site_url: str, queue: multiprocessing.queues.Queue[Any]) -> None:
    """In the forked child: an async Playwright worker on a loop of its own (the parent's does not
    run here), in the scope it inherited."""
    out: dict[str, Any] = {"loads": 0, "checks_at_fork": g.snapshot()["checks"]}

    async def work() -> None:
        async with async_playwright() as p:
            out["launching"] = True
            browser = await p.chromium.launch(**launch)
            out["launched"] = True
            page = await (await browser.new_context()).new_page()
            deadline = time.monotonic() + BROWSE_FOR
            while time.monotonic() < deadline:
                await page.goto(site_url)
                out["loads"] += 1
            await browser.close()

    try:
        asyncio.run(work())
        out["error"] = None
    except GuardError as exc:
        out["error"] = type(exc).__name__
        out["chromium_after_refusal"] = chromium_descendants()
    except Exception as exc:
        out["error"] = repr(exc)
    queue.put(child_report(g, out))


def start_child(target: Any, *args: Any) -> tuple[Any, multiprocessing.queues.Queue[Any]]:
    """Fork a child running ``target`` (from this thread: its context is what the child inherits)."""
    queue: multiprocessing.queues.Queue[Any] = FORK.Queue()
    proc = FORK.Process(target=target, args=(*args, queue))
    proc.start()
    return proc, queue


def collect(proc: Any, queue: multiprocessing.queues.Queue[Any]) -> dict[str, Any]:
    """What the child reported, once it has ended (blocks this thread)."""
    try:
        result: dict[str, Any] = queue.get(timeout=120)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == 0, f"the child ended with {proc.exitcode}"
    return result


def fork_and_wait(target: Any, *args: Any) -> dict[str, Any]:
    return collect(*start_child(target, *args))


def assert_worked(child: dict[str, Any]) -> None:
    assert child["error"] is None, child
    assert child["launched"] is True and child["loads"] > 0
    assert child["tripped"] is None and child["failures"] == 0, child
    # the child read the balance itself: more checks than it inherited
    assert child["checks"] > child["checks_at_fork"], child
    assert child["balance"] == "10.25"
    assert child["chromium_left"] == []


def assert_refused(child: dict[str, Any]) -> None:
    assert child["error"] == "LowBalanceError", child
    assert child["launching"] is True and "launched" not in child  # refused at the launch itself
    assert child["chromium_after_refusal"] == []  # no browser started in the child
    assert child["tripped"] == "vastcap_low_balance" and child["balance"] == "0"


# -- sync scope ----------------------------------------------------------------------------------
def test_a_worker_forked_in_a_sync_scope_works_on_a_funded_account(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite
) -> None:
    g = guard(KEY, api_url=sandbox.url, interval=INTERVAL)

    @g
    def parent() -> dict[str, Any]:
        return fork_and_wait(sync_child, g, launch, site.url)

    child = parent()  # the parent is not stopped either: no error
    assert_worked(child)
    assert g.tripped is None
    assert_gone(marker)


def test_a_worker_forked_in_a_sync_scope_is_refused_on_an_emptied_account(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite
) -> None:
    # a long interval: the parent's own reading stays $10.25 until the fork and after it
    g = guard(KEY, api_url=sandbox.url, interval=30)
    child: dict[str, Any] = {}

    @g
    def parent() -> None:
        with sync_playwright() as p:
            page = p.chromium.launch(**launch).new_page()  # the parent's own, tracked by its scope
            page.goto(site.url)
            sandbox.set_balance(KEY, 0)  # after the parent's pre-flight, before the fork
            child.update(fork_and_wait(sync_child, g, launch, site.url))
            assert g.tripped is None  # the parent has not read the new balance yet
            page.goto(site.page_url(1))  # the child's stop did not close the parent's browser
            page.context.browser.close()

    parent()
    assert_refused(child)
    assert_gone(marker)


# -- async scope ---------------------------------------------------------------------------------
def test_a_worker_forked_in_an_async_scope_works_on_a_funded_account(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite
) -> None:
    g = guard(KEY, api_url=sandbox.url, interval=INTERVAL)

    async def parent() -> dict[str, Any]:
        async with g:
            # forked on the loop's thread, from a task of the scope; the parent's loop goes on while
            # the child works (a fork from an executor thread would end the child with exit code 1:
            # a CPython quirk, not the guard's)
            proc, queue = start_child(async_child, g, launch, site.url)
            return await asyncio.to_thread(collect, proc, queue)

    child = asyncio.run(parent())
    assert_worked(child)
    assert g.tripped is None
    assert_gone(marker)


def test_a_worker_forked_in_an_async_scope_is_refused_on_an_emptied_account(
    sandbox: Sandbox, launch: dict[str, Any], marker: str, site: LocalSite
) -> None:
    g = guard(KEY, api_url=sandbox.url, interval=30)

    async def parent() -> dict[str, Any]:
        async with g, async_playwright() as p:
            browser = await p.chromium.launch(**launch)  # the parent's own, tracked by its scope
            page = await browser.new_page()
            await page.goto(site.url)
            sandbox.set_balance(KEY, 0)
            proc, queue = start_child(async_child, g, launch, site.url)
            result = await asyncio.to_thread(collect, proc, queue)
            assert g.tripped is None  # the parent has not read the new balance yet
            await page.goto(site.page_url(1))  # the child's stop did not close the parent's browser
            await browser.close()
            return result

    child = asyncio.run(parent())
    assert_refused(child)
    assert_gone(marker)


def test_the_parent_still_stops_on_its_own_reading(sandbox: Sandbox, site: LocalSite) -> None:
    """The control: the emptied account does stop the parent once it reads it (the children above
    were refused on their own fresh reading, not on the parent's)."""
    g = guard(KEY, api_url=sandbox.url, interval=INTERVAL)
    with pytest.raises(LowBalanceError):
        with g:
            sandbox.set_balance(KEY, 0)
            deadline = time.monotonic() + 15
            while g.tripped is None and time.monotonic() < deadline:
                time.sleep(0.05)
