"""Fault matrix for the Playwright guard mid-run, async API: one shared Chromium on one event
loop for the module (pytest-asyncio, module loop scope), each case a guarded run with its own
context. Same documented outcomes as the sync module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright
from playwright.async_api import Error as PlaywrightError
from rel_midrun import STOP_WITHIN, check_midrun_outcome, outcome
from rel_pw import launch_kwargs, nothing_left_behind  # noqa: F401
from rel_support import FAULT_NAMES, KEY, MIDRUN_MAX_FAILURES, inject

from vastcap_guard import GuardError
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.usefixtures("nothing_left_behind")]


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=64) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    kwargs = launch_kwargs()
    async with async_playwright() as p:
        b = await p.chromium.launch(**kwargs)
        yield b
        await b.close()


@pytest.mark.parametrize("fault", FAULT_NAMES)
async def test_midrun_fault_async(browser: Browser, site: LocalSite, caplog: pytest.LogCaptureFixture,
                                  fault: str) -> None:
    caplog.set_level(logging.DEBUG)
    result: dict[str, Any] = outcome()
    context_open = True
    with Sandbox({KEY: "10"}) as sb:
        g = guard(KEY, api_url=sb.url, interval=0.3, timeout=0.5, max_failures=MIDRUN_MAX_FAILURES)
        try:
            async with g:
                context = await browser.new_context()
                page = await context.new_page()
                await page.goto(site.url)
                await asyncio.to_thread(inject, sb, fault)  # stopping the sandbox blocks briefly
                deadline = time.monotonic() + STOP_WITHIN
                while time.monotonic() < deadline:
                    await page.wait_for_timeout(50)
                result["finished"] = True
        except GuardError as exc:
            result["err"] = exc
        try:  # a closed context refuses new pages (browser.contexts may lag behind)
            await context.new_page()
            context_open = True
            await context.close()
        except PlaywrightError:
            context_open = False
    assert browser.is_connected(), "the guard closed the shared browser it did not start"
    check_midrun_outcome(fault, g, result["err"], result["finished"], caplog, context_open)
