"""Pause mode (``on_low_balance="pause"``) with real Crawlee crawls: a low balance holds every new
request until a top-up, the guard keeps checking, the crawl then finishes with every page crawled
once; a pause longer than ``pause_timeout`` closes; answers about the account still stop at once."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from core_keys import BAD_KEY, KEY
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
    nothing_left_behind,  # noqa: F401
    site_fixture,  # noqa: F401
    site_paths,
    until,
)

from vastcap_guard import AccountDisabledError, InvalidKeyError, LowBalanceError
from vastcap_guard.crawlee import CrawlerGuard, guard_crawler
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("nothing_left_behind")]


async def checks_go_on(sandbox: Sandbox, more: int = 3) -> None:
    """The guard keeps checking while it waits: ``more`` getBalance calls happen."""
    calls = sandbox.call_count("getBalance")
    await until(lambda: sandbox.call_count("getBalance") >= calls + more)


async def test_a_pause_holds_every_request_until_a_top_up_then_the_crawl_finishes(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("parsel", await fresh_queue(), concurrency=2)
    handled: list[str] = []
    follow_links(crawler, handled)
    g: CrawlerGuard | None = None
    parking = Parking(crawler, site, handled, after=6, count=2, decide=lambda: sandbox.set_balance(KEY, 0),
                      released=lambda: g is not None and g.paused)
    g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1, on_low_balance="pause", pause_timeout=120)
    async with g:
        crawl = asyncio.ensure_future(crawler.run([site.url]))
        await until(lambda: parking.hits_at_decision is not None)  # paused; the parked requests went back
        await checks_go_on(sandbox)
        during = site_paths(site)
        assert g.paused and g.tripped is None and not crawl.done()
        sandbox.set_balance(KEY, 10)
        stats: Any = await asyncio.wait_for(crawl, 60)
    # nothing reached the site during the pause
    assert during == parking.hits_at_decision and not set(parking.parked) & set(during)
    # then the crawl finished normally: every page once, none dropped, none repeated
    assert sorted(handled) == sorted(all_paths(site))
    assert Counter(site_paths(site)) == Counter(all_paths(site))
    assert stats.requests_finished == site.pages + 1 and stats.requests_failed == 0
    assert g.tripped is None and not g.paused
    snap = g.snapshot()
    assert snap["pauses"] == 1 and snap["tripped"] is None
    warnings = guard_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "paused the crawl [vastcap_low_balance]" in warnings[0].getMessage()
    assert any("the crawl resumes after waiting" in r.getMessage() for r in guard_records(caplog, logging.INFO))
    assert guard_records(caplog, logging.ERROR) == []
    assert len(held_lines(caplog)) == 2  # the two parked requests, handed back to the queue
    assert_no_traceback(caplog)


async def test_a_low_balance_at_preflight_waits_with_zero_requests_and_a_top_up_starts_the_crawl(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sandbox.set_balance(KEY, 0)
    crawler = make_crawler("parsel", await fresh_queue())
    handled: list[str] = []
    follow_links(crawler, handled)
    g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1, on_low_balance="pause")
    body: list[str] = []

    async def guarded() -> Any:
        async with g:
            body.append("entered")
            return await crawler.run([site.url])

    task = asyncio.ensure_future(guarded())
    await until(lambda: g.paused)
    await checks_go_on(sandbox)
    assert body == [] and site.request_count == 0 and not task.done()
    sandbox.set_balance(KEY, 10)
    stats = await asyncio.wait_for(task, 60)
    assert body == ["entered"] and stats.requests_finished == site.pages + 1
    assert sorted(handled) == sorted(all_paths(site))
    warnings = guard_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "is holding the crawl before it starts" in warnings[0].getMessage()
    assert guard_records(caplog, logging.ERROR) == [] and g.tripped is None
    assert_no_traceback(caplog)


@pytest.mark.parametrize("when", ["preflight", "midrun"])
async def test_a_pause_longer_than_pause_timeout_closes_the_crawl(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture, when: str
) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("parsel", await fresh_queue(), concurrency=2)
    handled: list[str] = []
    follow_links(crawler, handled)
    g: CrawlerGuard | None = None
    body: list[str] = []
    stats: Any = None
    if when == "preflight":
        # one check a minute: only the guard's timer can end this pause in time
        sandbox.set_balance(KEY, 0)
        g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=60, on_low_balance="pause", pause_timeout=0.3)
        with pytest.raises(LowBalanceError) as info:
            async with g:
                body.append("entered")
        assert body == [] and site.request_count == 0
        stats = await crawler.run([site.url])  # the crawler was not touched
        assert stats.requests_finished == site.pages + 1
    else:
        parking = Parking(crawler, site, handled, after=6, count=2, decide=lambda: sandbox.set_balance(KEY, 0),
                          released=lambda: g is not None and g.paused)
        g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1, on_low_balance="pause", pause_timeout=0.5)
        with pytest.raises(LowBalanceError) as info:
            async with g:
                stats = await asyncio.wait_for(crawler.run([site.url]), 60)
        assert stats.requests_finished == len(handled) and stats.requests_failed == 0
        assert site_paths(site) == parking.hits_at_decision  # nothing was sent during the pause
        assert len(held_lines(caplog)) == 2
    assert info.value.reason == "vastcap_low_balance" and "of pause" in info.value.message
    errors = guard_records(caplog, logging.ERROR)
    assert len(errors) == 1 and "[vastcap_low_balance]" in errors[0].getMessage()
    assert g.snapshot()["pauses"] == 1
    assert_no_traceback(caplog)


@pytest.mark.parametrize("when", ["preflight-invalid-key", "disabled-while-paused"])
async def test_answers_about_the_account_still_stop_at_once_in_pause_mode(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture, when: str
) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("parsel", await fresh_queue(), concurrency=2)
    handled: list[str] = []
    follow_links(crawler, handled)
    if when == "preflight-invalid-key":
        g = guard_crawler(crawler, BAD_KEY, api_url=sandbox.url, interval=60, on_low_balance="pause")
        with pytest.raises(InvalidKeyError):
            async with g:
                await crawler.run([site.url])
        assert site.request_count == 0 and not g.paused
    else:
        paused: list[CrawlerGuard] = []  # the guard, once built: the parking hook must come first
        parking = Parking(crawler, site, handled, after=6, count=2, decide=lambda: sandbox.set_balance(KEY, 0),
                          released=lambda: bool(paused) and paused[0].paused)
        g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1, on_low_balance="pause")
        paused.append(g)
        with pytest.raises(AccountDisabledError):
            async with g:
                crawl = asyncio.ensure_future(crawler.run([site.url]))
                await until(lambda: parking.hits_at_decision is not None)
                sandbox.disable(KEY)
                stats = await asyncio.wait_for(crawl, 60)
        assert stats.requests_finished == len(handled)
        assert site_paths(site) == parking.hits_at_decision
        assert len(held_lines(caplog)) == 2
    errors = guard_records(caplog, logging.ERROR)
    assert len(errors) == 1 and g.tripped is not None and g.tripped.reason in errors[0].getMessage()
    assert_no_traceback(caplog)


async def test_a_spend_refused_during_a_pause_does_not_stop_the_crawl(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler in flight when the pause begins asks to spend: ensure_funds refuses (the handler
    fails and Crawlee retries its request after the top-up); the crawl stays paused, not stopped."""
    caplog.set_level(logging.INFO)
    crawler = make_crawler("parsel", await fresh_queue(), concurrency=1)
    handled: list[str] = []
    refused: list[str] = []
    g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1, on_low_balance="pause")

    async def pay(ctx: Any) -> None:
        if len(handled) == 6 and not refused:
            sandbox.set_balance(KEY, 0)
            await until(lambda: g.paused)
            try:
                await g.ensure_funds("0.002")
            except LowBalanceError as exc:
                refused.append(exc.reason)
                raise
        await g.ensure_funds("0.002")

    follow_links(crawler, handled, before=pay)
    async with g:
        crawl = asyncio.ensure_future(crawler.run([site.url]))
        await until(lambda: bool(refused))
        await checks_go_on(sandbox)
        assert g.paused and g.tripped is None and not crawl.done()
        sandbox.set_balance(KEY, 10)
        stats: Any = await asyncio.wait_for(crawl, 60)
    assert refused == ["vastcap_low_balance"] and g.tripped is None
    assert stats.requests_failed == 0 and sorted(set(handled)) == sorted(all_paths(site))
    assert guard_records(caplog, logging.ERROR) == []
    assert_no_traceback(caplog)
