"""A flapping API: every other getBalance call fails, for a bounded run (about a minute in all).

With the default ``max_failures`` (3) a failed check is always followed by a good one, so the job
must never be stopped, and every failed check must be counted (Scrapy: the
``vastcap/check_failures`` stat; Playwright: the guard's ``check_failures`` counter) and reported
with one WARNING line.

The failing calls answer something the client does not retry (an unknown error code, a 403 page
from a proxy): a retried failure (a 502) would be absorbed by the next attempt of the same check
and no check would fail at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import async_playwright
from playwright.sync_api import sync_playwright
from rel_pw import assert_no_traceback, launch_kwargs, nothing_left_behind, records_at  # noqa: F401
from rel_support import KEY, UNKNOWN_CODE_BODY, Batches, guard_lines, lines_at

from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = pytest.mark.slow

#: seconds each Playwright run flaps (the Scrapy crawl flaps for its CLOSESPIDER_TIMEOUT, 25 s)
FLAP_SECONDS = 12


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=64) as s:
        yield s


def faulted(sb: Sandbox) -> int:
    return sum(1 for c in sb.calls("getBalance") if c.fault)


def check_flap(g: Any, sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    snap = g.snapshot()
    assert g.tripped is None and snap["tripped"] is None
    failures = snap["check_failures"]
    assert isinstance(failures, int) and failures >= 8, f"the API did not flap: {snap}"
    assert faulted(sb) - 1 <= failures <= faulted(sb)
    assert isinstance(snap["checks"], int) and snap["checks"] >= 2 * failures - 1
    warnings = [r.getMessage() for r in records_at(caplog, logging.WARNING)]
    assert len(warnings) == failures
    assert all("balance check failed (1 in a row; the Playwright script stops after 3)" in w for w in warnings), warnings[:3]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert_no_traceback(caplog)


@pytest.mark.browser
@pytest.mark.usefixtures("nothing_left_behind")
def test_flapping_api_never_stops_a_sync_script(site: LocalSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    kwargs = launch_kwargs()
    with Sandbox({KEY: "10"}) as sb:
        sb.fault("getBalance", "html", status=403, every=2, offset=1)  # a proxy's error page, not retried
        g = guard(KEY, api_url=sb.url, interval=0.3, timeout=0.5)
        with g, sync_playwright() as p:
            browser = p.chromium.launch(**kwargs)
            page = browser.new_page()
            deadline = time.monotonic() + FLAP_SECONDS
            while time.monotonic() < deadline:
                page.goto(site.page_url(int(time.monotonic() * 10) % 64))
                page.wait_for_timeout(100)
            browser.close()
        check_flap(g, sb, caplog)


@pytest.mark.browser
@pytest.mark.usefixtures("nothing_left_behind")
def test_flapping_api_never_stops_an_async_script(site: LocalSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    kwargs = launch_kwargs()
    with Sandbox({KEY: "10"}) as sb:
        sb.fault("getBalance", "body", body=UNKNOWN_CODE_BODY, every=2, offset=1)
        g = guard(KEY, api_url=sb.url, interval=0.3, timeout=0.5)

        async def main() -> None:
            async with g, async_playwright() as p:
                browser = await p.chromium.launch(**kwargs)
                page = await browser.new_page()
                deadline = time.monotonic() + FLAP_SECONDS
                while time.monotonic() < deadline:
                    await page.goto(site.page_url(int(time.monotonic() * 10) % 64))
                    await page.wait_for_timeout(100)
                await browser.close()

        asyncio.run(main())
        check_flap(g, sb, caplog)


@pytest.mark.parametrize("batch", ["flap"])
def test_flapping_api_never_stops_a_crawl(batches: Batches, batch: str) -> None:
    case = batches.case(batch, "flap")
    assert case["crash"] is None
    stats = case["stats"]
    assert stats["finish_reason"] == "closespider_timeout"  # the planned end of the run
    assert [s for s in case["signals"] if s["signal"] == "guard_tripped"] == []
    checked = [s for s in case["signals"] if s["signal"] == "balance_checked"]
    failed = [s for s in checked if not s["ok"]]
    assert len(failed) >= 15, "the API did not flap"
    assert all(s["error_reason"] == "vastcap_api_error" for s in failed)
    # every failed check counted, and every one a separate WARNING line
    assert stats["vastcap/check_failures"] == len(failed)
    assert stats["vastcap/checks"] == len(checked)
    assert case["faulted_calls"] - 1 <= len(failed) <= case["faulted_calls"]
    warnings = guard_lines(case["log"], "WARNING")
    assert len(warnings) == len(failed)
    assert all("(1 in a row; the crawl stops after 3)" in w for w in warnings), warnings[:3]
    assert lines_at(case["log"], "ERROR") == []
    assert "Traceback" not in "\n".join(case["log"])
    assert case["site_requests"] > 100
