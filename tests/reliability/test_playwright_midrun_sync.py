"""Fault matrix for the Playwright guard mid-run, sync API: one shared Chromium for the module,
each case a guarded run with its own context (the guard closes only what it tracked).

Documented (docs/playwright.md): fewer than ``max_failures`` failed checks in a row never stop
the script (one WARNING each); the next one closes the tracked browsers and contexts, and the
guarded block raises the failure's ``GuardError`` chained from Playwright's error; a negative
balance stops at once with ``LowBalanceError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from rel_midrun import STOP_WITHIN, check_midrun_outcome, outcome
from rel_pw import launch_kwargs, nothing_left_behind  # noqa: F401
from rel_support import FAULT_NAMES, KEY, MIDRUN_MAX_FAILURES, inject

from vastcap_guard import GuardError
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("nothing_left_behind")]


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=64) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    kwargs = launch_kwargs()
    with sync_playwright() as p:
        b = p.chromium.launch(**kwargs)
        yield b
        b.close()


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_midrun_fault_sync(browser: Browser, site: LocalSite, caplog: pytest.LogCaptureFixture, fault: str) -> None:
    caplog.set_level(logging.DEBUG)
    result: dict[str, Any] = outcome()
    context_open = True
    with Sandbox({KEY: "10"}) as sb:
        g = guard(KEY, api_url=sb.url, interval=0.3, timeout=0.5, max_failures=MIDRUN_MAX_FAILURES)
        try:
            with g:
                context = browser.new_context()  # started inside the guard: tracked
                page = context.new_page()
                page.goto(site.url)
                inject(sb, fault)
                deadline = time.monotonic() + STOP_WITHIN
                while time.monotonic() < deadline:
                    page.wait_for_timeout(50)  # busy inside Playwright, as a real script is
                result["finished"] = True
        except GuardError as exc:
            result["err"] = exc
        try:  # a closed context refuses new pages (browser.contexts may lag behind)
            context.new_page()
            context_open = True
            context.close()
        except PlaywrightError:
            context_open = False
    assert browser.is_connected(), "the guard closed the shared browser it did not start"
    check_midrun_outcome(fault, g, result["err"], result["finished"], caplog, context_open)
