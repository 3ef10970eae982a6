"""``guard_crawler`` around real Crawlee HTTP crawls (Parsel, BeautifulSoup, plain HTTP) of a local
site, with the VastCap sandbox: pre-flight refusals, funded crawls, mid-run stops and the resume,
``ensure_funds``, and arguments."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from core_keys import BAD_KEY, DISABLED_KEY, KEY, LOW_KEY
from cr_support import (
    HTTP_KINDS,
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
    path_of,
    pinned,
    site_fixture,  # noqa: F401
    site_paths,
    until,
)
from crawlee.crawlers import BasicCrawler

from vastcap_guard import (
    AccountDisabledError,
    BudgetExceededError,
    ConfigError,
    GuardError,
    InvalidKeyError,
    LowBalanceError,
)
from vastcap_guard.crawlee import CrawlerGuard, guard_crawler
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("nothing_left_behind")]


# -- pre-flight ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "error"), [(BAD_KEY, InvalidKeyError), (DISABLED_KEY, AccountDisabledError),
                                            (LOW_KEY, LowBalanceError), (None, InvalidKeyError)],
                         ids=["invalid-key", "disabled", "low-balance", "no-key"])
async def test_a_refused_preflight_raises_before_the_body_and_sends_nothing(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture, key: str | None, error: type[GuardError]
) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("parsel", await fresh_queue())
    follow_links(crawler, [])
    ran = []
    with pytest.raises(error) as info:
        async with guard_crawler(crawler, key, api_url=sandbox.url, interval=0.2):
            ran.append("body")
            await crawler.run([site.url])
    assert ran == [] and site.request_count == 0
    if error is LowBalanceError:
        assert info.value.balance == Decimal("0.0005")  # type: ignore[attr-defined]
    errors = guard_records(caplog, logging.ERROR)
    assert len(errors) == 1 and f"did not start the crawl [{info.value.reason}]" in errors[0].getMessage()
    assert_no_traceback(caplog)
    # the crawler was not touched: it can still crawl (outside any guard)
    stats = await crawler.run([site.url])
    assert stats.requests_finished == site.pages + 1


# -- a funded crawl -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_a_funded_crawl_runs_untouched(sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture,
                                             kind: str) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler(kind, await fresh_queue())
    handled: list[str] = []
    follow_links(crawler, handled)
    async with guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.2) as g:
        stats = await crawler.run([site.url])
    assert sorted(handled) == sorted(all_paths(site)) == sorted(site_paths(site))
    assert stats.requests_finished == site.pages + 1 and stats.requests_failed == 0
    assert g.tripped is None and g.balance == Decimal("10.25") and not g.paused
    snap = g.snapshot()
    assert snap["tripped"] is None and isinstance(snap["checks"], int) and snap["checks"] >= 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    infos = [r.getMessage() for r in guard_records(caplog, logging.INFO)]
    assert infos[0].startswith("vastcap-guard: VastCap balance $10.25") and "balance check(s)" in infos[-1]
    assert all(r.name == "vastcap_guard.crawlee" for r in guard_records(caplog, logging.INFO))


# -- a stop in the middle of a crawl --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["parsel", "http"])
async def test_a_midrun_stop_sends_nothing_after_the_decision_and_keeps_the_rest_for_a_resume(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    queue = await fresh_queue()
    crawler = make_crawler(kind, queue, concurrency=2)
    handled: list[str] = []
    follow_links(crawler, handled)
    g: CrawlerGuard | None = None
    # both tasks wait before the gate when the account runs dry: none is in flight at the decision
    parking = Parking(crawler, site, handled, after=6, count=2, decide=lambda: sandbox.set_balance(KEY, 0),
                      released=lambda: g is not None and g.tripped is not None)
    g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1)
    stats: Any = None
    with pytest.raises(LowBalanceError) as info:
        async with g:
            stats = await asyncio.wait_for(crawler.run([site.url]), 60)
    # run() returned normally, with its statistics; the block raised the guard's error
    assert stats is not None and stats.requests_finished == len(handled) and stats.requests_failed == 0
    assert info.value is g.tripped and info.value.balance == 0
    # nothing reached the site after the decision; the parked requests never did
    assert parking.hits_at_decision is not None and len(parking.parked) == 2
    assert site_paths(site) == parking.hits_at_decision
    assert not set(parking.parked) & set(site_paths(site))
    assert Counter(site_paths(site)) == Counter(handled)
    # Crawlee's way: crawler.stop() with the reason; one ERROR line; one retry line per parked request
    messages = [r.getMessage() for r in caplog.records]
    assert any("Crawler.stop() was called with following reason: vastcap-guard stopped the crawl "
               "[vastcap_low_balance]" in m for m in messages)
    errors = guard_records(caplog, logging.ERROR)
    assert len(errors) == 1 and "is stopping the crawl [vastcap_low_balance]" in errors[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == errors
    assert len(held_lines(caplog)) == 2
    assert_no_traceback(caplog)
    assert KEY not in caplog.text and KEY not in repr(g) and KEY not in str(g.snapshot())
    # crawler.stop() kept the queue: a new crawler on it crawls the rest, each page once, no retry spent
    sandbox.set_balance(KEY, 10)
    assert not await queue.is_finished()
    again = make_crawler(kind, queue, concurrency=2)
    retries: dict[str, int] = {}

    async def note_retries(ctx: Any) -> None:
        retries[path_of(ctx.request.url)] = ctx.request.retry_count

    follow_links(again, handled, before=note_retries)
    async with guard_crawler(again, KEY, api_url=sandbox.url, interval=0.1) as g2:
        stats2 = await asyncio.wait_for(again.run(purge_request_queue=False), 60)
    assert g2.tripped is None
    assert sorted(handled) == sorted(all_paths(site)) == sorted(site_paths(site))
    assert stats2.requests_failed == 0
    assert set(parking.parked) <= set(retries) and set(retries.values()) == {0}  # no retry was spent


async def test_a_stop_before_run_returns_at_once_with_no_request(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("parsel", await fresh_queue())
    follow_links(crawler, [])
    with pytest.raises(LowBalanceError):
        async with guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1) as g:
            sandbox.set_balance(KEY, 0)
            await until(lambda: g.tripped is not None)
            stats = await crawler.run([site.url])
    assert stats.requests_total == 0 and site.request_count == 0
    assert_no_traceback(caplog)


async def test_a_basic_crawler_without_navigation_is_stopped_too(sandbox: Sandbox, site: LocalSite) -> None:
    """BasicCrawler has no pre-navigation hook: the stop is crawler.stop() alone (one task at a time
    here, so no other request was taken from the queue when the account ran dry)."""
    crawler: BasicCrawler[Any, Any] = BasicCrawler(request_manager=await fresh_queue(), concurrency_settings=pinned(1))
    seen: list[str] = []

    @crawler.router.default_handler
    async def handler(ctx: Any) -> None:
        seen.append(ctx.request.url)
        if len(seen) == 3:
            sandbox.set_balance(KEY, 0)
            await until(lambda: g.tripped is not None)

    g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1)
    with pytest.raises(LowBalanceError):
        async with g:
            stats = await crawler.run([site.page_url(n) for n in range(30)])
    assert stats.requests_finished == 3 and len(seen) == 3


# -- spending -----------------------------------------------------------------------------------------
async def test_ensure_funds_reserves_spend_and_a_spend_cap_stops_the_crawl(
    sandbox: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    crawler = make_crawler("parsel", await fresh_queue(), concurrency=1)
    handled: list[str] = []
    projected: list[Decimal] = []
    g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=30, max_spend="0.01")

    async def pay(ctx: Any) -> None:
        projected.append(await g.ensure_funds("0.004"))  # a captcha on every page

    follow_links(crawler, handled, before=pay)
    with pytest.raises(BudgetExceededError) as info:
        async with g:
            stats = await crawler.run([site.url])
    assert projected == [Decimal("10.246"), Decimal("10.242")]  # the third would pass the cap
    assert info.value.reason == "vastcap_budget_exceeded" and g.tripped is info.value
    assert stats.requests_finished == 2 and stats.requests_failed == 0  # the third went back to the queue
    errors = guard_records(caplog, logging.ERROR)
    assert len(errors) == 1 and "[vastcap_budget_exceeded]" in errors[0].getMessage()
    assert_no_traceback(caplog)
    with pytest.raises(RuntimeError, match="inside"):
        await g.ensure_funds("0.001")


# -- arguments ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [({"interval": 0}, "interval"), ({"min_balance": "lots"}, "min_balance"), ({"max_spend": 0}, "max_spend"),
     ({"max_failures": -1}, "max_failures"), ({"timeout": -2}, "timeout"), ({"api_url": "ftp://x"}, "api_url"),
     ({"warn_minutes": "soon"}, "warn_minutes"), ({"shared_state": "http://127.0.0.1:6379"}, "shared_state"),
     ({"on_low_balance": "wait"}, "on_low_balance"), ({"pause_timeout": 0}, "pause_timeout")],
)
async def test_bad_values_raise_config_error_naming_the_parameter(kwargs: dict[str, Any], setting: str) -> None:
    crawler = make_crawler("parsel", await fresh_queue())
    with pytest.raises(ConfigError) as info:
        guard_crawler(crawler, KEY, **kwargs)
    assert info.value.setting == setting and setting in str(info.value) and KEY not in str(info.value)


async def test_misuse_is_a_clear_error(sandbox: Sandbox) -> None:
    with pytest.raises(TypeError, match="Crawlee crawler"):
        guard_crawler("not a crawler", KEY)  # type: ignore[arg-type]
    crawler = make_crawler("parsel", await fresh_queue())
    g = guard_crawler(crawler, KEY, api_url=sandbox.url)
    assert KEY not in repr(g) and "vc_…" in repr(g) and "ParselCrawler" in repr(g)
    assert g.tripped is None and g.balance is None and g.snapshot()["checks"] == 0
    async with g:
        with pytest.raises(RuntimeError, match="already active"):
            async with g:
                pass
    async with g:  # one guard, entered again: a new run
        assert g.balance == Decimal("10.25")
