"""``guard_crawler`` around a real ``PlaywrightCrawler`` (Debian's headless Chromium): no browser for
a refused crawl; a stop or a pause leaves Crawlee's browsers to Crawlee, which closes them (no
``ContextPipelineFinalizationError``, no process left); pages of requests handed back are closed."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from core_keys import KEY, LOW_KEY
from cr_support import (
    Parking,
    all_paths,
    assert_no_traceback,
    follow_links,
    fresh_queue,
    fresh_site_fixture,  # noqa: F401
    guard_records,
    held_lines,
    make_crawler,
    marked_processes,
    nothing_left_behind,  # noqa: F401
    site_paths,
    until,
    wait_until,
)

from vastcap_guard import LowBalanceError
from vastcap_guard.crawlee import CrawlerGuard, guard_crawler
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.usefixtures("nothing_left_behind")]


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=14) as s:
        yield s


@pytest.fixture
def marker() -> Iterator[str]:
    """Tags this test's browsers; none may be left when it ends."""
    tag = f"--vastcap-guard-test={uuid.uuid4().hex}"
    yield tag
    assert wait_until(lambda: not marked_processes(tag)), f"browser processes left: {marked_processes(tag)}"


def crashed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage()[:300] for r in caplog.records
            if "ContextPipelineFinalizationError" in r.getMessage() or "TargetClosedError" in r.getMessage()]


async def test_a_refused_crawl_launches_no_browser(sandbox: Sandbox, site: LocalSite, marker: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("playwright", await fresh_queue(), marker=marker)
    follow_links(crawler, [])
    launched: list[str] = []

    async def spy(page_id: str, plugin: Any) -> None:
        launched.append(page_id)

    crawler._browser_pool.pre_launch_hook(spy)  # type: ignore[attr-defined]
    with pytest.raises(LowBalanceError):
        async with guard_crawler(crawler, LOW_KEY, api_url=sandbox.url, interval=0.2):
            await crawler.run([site.url])
    assert launched == [] and marked_processes(marker) == [] and site.request_count == 0
    assert len(guard_records(caplog, logging.ERROR)) == 1
    assert_no_traceback(caplog)


@pytest.mark.parametrize("mode", ["close", "pause"])
async def test_a_stop_or_a_pause_leaves_the_browsers_to_crawlee(
    sandbox: Sandbox, site: LocalSite, marker: str, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("playwright", await fresh_queue(), concurrency=2, marker=marker)
    handled: list[str] = []
    follow_links(crawler, handled)
    g: CrawlerGuard | None = None

    def decided() -> bool:
        return g is not None and (g.tripped is not None or g.paused)

    parking = Parking(crawler, site, handled, after=4, count=2, decide=lambda: sandbox.set_balance(KEY, 0),
                      released=decided)
    g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1, on_low_balance=mode)
    stats: Any = None
    if mode == "close":
        with pytest.raises(LowBalanceError):
            async with g:
                stats = await asyncio.wait_for(crawler.run([site.url]), 90)
        assert stats.requests_finished == len(handled) and stats.requests_failed == 0
        assert site_paths(site) == parking.hits_at_decision and not set(parking.parked) & set(site_paths(site))
        assert len(guard_records(caplog, logging.ERROR)) == 1
    else:
        async with g:
            crawl = asyncio.ensure_future(crawler.run([site.url]))
            await until(lambda: parking.hits_at_decision is not None)
            calls = sandbox.call_count("getBalance")
            await until(lambda: sandbox.call_count("getBalance") >= calls + 3)
            during = site_paths(site)
            assert marked_processes(marker), "the browser is not found by its marker: the leftover check would be blind"
            sandbox.set_balance(KEY, 10)
            stats = await asyncio.wait_for(crawl, 90)
        assert during == parking.hits_at_decision
        assert sorted(handled) == sorted(all_paths(site)) and Counter(site_paths(site)) == Counter(all_paths(site))
        assert stats.requests_failed == 0 and g.tripped is None
        assert guard_records(caplog, logging.ERROR) == []
    # the parked requests' pages were closed and the requests handed back; Crawlee closed its browser
    assert len(held_lines(caplog)) == 2
    assert crashed(caplog) == []
    assert_no_traceback(caplog)
    assert wait_until(lambda: not marked_processes(marker)), "a browser outlived the block"
