"""Fault matrix for the Crawlee integration: every fault the sandbox injects into getBalance, at
pre-flight and mid-run, around a real ParselCrawler crawl of a local site.

Documented (docs/crawlee.md): a failed pre-flight check raises the matching ``GuardError`` from
``async with`` before the body runs (``ApiUnavailableError``; ``ApiError`` for an unknown error
code) and no request reaches the site; mid-run, fewer than ``max_failures`` failed checks in a row
are tolerated (one WARNING each) and the next one stops the crawl with ``crawler.stop()``:
``run()`` returns its statistics and the block raises the error. A negative balance is
``LowBalanceError`` at once. Every time: one clear ERROR line, no traceback, the key nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from rel_support import (
    BALANCE_FAULTS,
    FAULT_NAMES,
    KEY,
    MIDRUN_MAX_FAILURES,
    assert_clear_line,
    expected_reason,
    free_port,
    inject,
)

os.environ.setdefault("CRAWLEE_STORAGE_DIR", tempfile.mkdtemp(prefix="vastcap-crawlee-reliability-"))

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler
from crawlee.storages import RequestQueue

from vastcap_guard import ApiError, ApiUnavailableError, GuardError, LowBalanceError
from vastcap_guard.crawlee import CrawlerGuard, guard_crawler
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = pytest.mark.asyncio(loop_scope="session")  # one loop for every Crawlee test: its cached storages hold loop-bound locks

ERROR_TYPES = {"vastcap_api_unavailable": ApiUnavailableError, "vastcap_low_balance": LowBalanceError,
               "vastcap_api_error": ApiError}


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=3000, delay=0.005) as s:
        yield s


async def crawler_with(handled: list[str]) -> ParselCrawler:
    queue = await RequestQueue.open(alias=f"rel{uuid.uuid4().hex}")
    crawler = ParselCrawler(request_manager=queue, request_handler_timeout=timedelta(seconds=30),
                            concurrency_settings=ConcurrencySettings(min_concurrency=2, max_concurrency=2,
                                                                     desired_concurrency=2))

    @crawler.router.default_handler
    async def handler(ctx: Any) -> None:
        handled.append(ctx.request.url)
        await ctx.enqueue_links()

    return crawler


def guard_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("vastcap_guard")]


def common_checks(caplog: pytest.LogCaptureFixture, g: CrawlerGuard, err: GuardError, reason: str) -> None:
    assert type(err) is ERROR_TYPES[reason] and err.reason == reason and g.tripped is err
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "vastcap_guard.crawlee", [r.getMessage() for r in errors]
    assert f"[{reason}]" in errors[0].getMessage()
    assert_clear_line(errors[0].getMessage())
    assert_clear_line(str(err))
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.getMessage()[:200] for r in shown if r.exc_info] == []
    assert not [r for r in shown if "Traceback" in r.getMessage()]
    for text in (caplog.text, str(err), repr(err), repr(g), str(g.snapshot())):
        assert KEY not in text


@pytest.mark.parametrize("fault", FAULT_NAMES)
async def test_preflight_fault_refuses_the_crawl(site: LocalSite, caplog: pytest.LogCaptureFixture,
                                                 fault: str) -> None:
    caplog.set_level(logging.DEBUG)
    site.reset()
    handled: list[str] = []
    with Sandbox({KEY: "10"}) as sb:
        if fault == "refused":
            url = f"http://127.0.0.1:{free_port()}/api/solver"
        else:
            inject(sb, fault)
            url = sb.url
        crawler = await crawler_with(handled)
        g = guard_crawler(crawler, KEY, api_url=url, interval=5, timeout=0.5)
        with pytest.raises(GuardError) as info:
            async with g:
                await crawler.run([site.url])
    assert handled == [] and site.request_count == 0
    assert guard_lines(caplog, logging.WARNING) == []
    assert g.snapshot()["check_failures"] == (0 if fault in BALANCE_FAULTS else 1)
    common_checks(caplog, g, info.value, expected_reason(fault))


@pytest.mark.parametrize("fault", FAULT_NAMES)
async def test_midrun_fault_stops_the_crawl_as_documented(site: LocalSite, caplog: pytest.LogCaptureFixture,
                                                          fault: str) -> None:
    caplog.set_level(logging.INFO)  # Crawlee's DEBUG lines carry the traceback of every request error
    site.reset()
    handled: list[str] = []
    stats: Any = None
    with Sandbox({KEY: "10"}) as sb:
        crawler = await crawler_with(handled)
        g = guard_crawler(crawler, KEY, api_url=sb.url, interval=0.1, timeout=0.5, max_failures=MIDRUN_MAX_FAILURES)
        with pytest.raises(GuardError) as info:
            async with g:
                crawl = asyncio.ensure_future(crawler.run([site.url]))
                deadline = time.monotonic() + 20
                while len(handled) < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(inject, sb, fault)  # stopping the sandbox blocks briefly
                stats = await asyncio.wait_for(crawl, 60)
    reason = expected_reason(fault)
    assert stats is not None and stats.requests_finished == len(handled) < site.pages + 1  # run() returned
    snap = g.snapshot()
    warnings = guard_lines(caplog, logging.WARNING)
    if fault in BALANCE_FAULTS:
        assert snap["check_failures"] == 0 and isinstance(snap["balance"], Decimal) and snap["balance"] < 0
        assert warnings == []
    else:  # the first failed check is tolerated (one WARNING), the MAX_FAILURES-th stops
        assert snap["check_failures"] == MIDRUN_MAX_FAILURES
        assert len(warnings) == MIDRUN_MAX_FAILURES - 1, warnings
        assert f"balance check failed (1 in a row; the crawl stops after {MIDRUN_MAX_FAILURES})" in warnings[0]
    assert any("Crawler.stop() was called with following reason: vastcap-guard stopped the crawl "
               f"[{reason}]" in r.getMessage() for r in caplog.records)
    common_checks(caplog, g, info.value, reason)
