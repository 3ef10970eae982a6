"""In-process crawls, the way Scrapy tests its own extensions (pytest-twisted, asyncio reactor).

Run with ``python -m pytest --reactor=asyncio tests/twisted``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import scrapy
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from scrapy.utils.test import get_crawler

from vastcap_guard import signals
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.scrapy import get_guard
from vastcap_guard.site import LocalSite

pytest.importorskip("pytest_twisted")

KEY = "vc_inproc_S3CR3T_k3y_0d15ea5e"


class LinkSpider(scrapy.Spider):
    name = "links"

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.url = url

    async def start(self) -> Any:
        yield scrapy.Request(self.url)

    def parse(self, response: Any) -> Any:
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}) as sandbox:
        yield sandbox


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=20) as s:
        yield s


async def crawl(sb: Sandbox, site: LocalSite, **settings: Any) -> Any:
    crawler = get_crawler(LinkSpider, {
        "EXTENSIONS": {"vastcap_guard.scrapy.BalanceGuard": 500},
        "VASTCAP_API_KEY": KEY,
        "VASTCAP_API_URL": sb.url,
        "VASTCAP_CHECK_INTERVAL": 0.5,
        "LOG_LEVEL": "DEBUG",
        **settings,
    })
    tripped: list[str] = []
    crawler.signals.connect(lambda reason, **kw: tripped.append(reason), signal=signals.guard_tripped, weak=False)
    if hasattr(crawler, "crawl_async"):
        await crawler.crawl_async(url=site.url)
    else:  # Scrapy 2.13
        await maybe_deferred_to_future(crawler.crawl(url=site.url))
    crawler.tripped = tripped
    return crawler


@deferred_f_from_coro_f
async def test_funded_crawl_finishes(sb: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    crawler = await crawl(sb, site)
    assert crawler.stats.get_value("finish_reason") == "finished"
    assert site.request_count == 21
    assert crawler.stats.get_value("vastcap/balance") == 10.0
    assert get_guard(crawler) is not None and get_guard(crawler).tripped is None
    assert KEY not in caplog.text


@deferred_f_from_coro_f
async def test_low_balance_sends_nothing(sb: Sandbox, site: LocalSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sb.set_balance(KEY, 0)
    crawler = await crawl(sb, site)
    assert crawler.stats.get_value("finish_reason") == "vastcap_low_balance"
    assert site.request_count == 0
    assert crawler.tripped == ["vastcap_low_balance"]
    assert KEY not in caplog.text
    assert "Traceback" not in caplog.text


# -- issue 15: finished crawls leave nothing alive -------------------------------------------------
class EmptySpider(scrapy.Spider):
    name = "empty"

    async def start(self) -> Any:
        return
        yield


class DrainingSpider(LinkSpider):
    """Empties the account on its first page: the guard stops the crawl mid-way."""

    name = "draining"
    sandbox: Sandbox

    def parse(self, response: Any) -> Any:
        self.sandbox.set_balance(KEY, 0)
        yield from super().parse(response)


@deferred_f_from_coro_f
async def test_sequential_crawls_leave_no_crawler_alive(sb: Sandbox) -> None:
    """20 crawls in one process, one refused at pre-flight, one stopped mid-crawl: once they are
    over, no Crawler (nor BalanceGuard) is left alive (get_guard's registry held every one)."""
    # (not caplog: its records keep Scrapy's ``extra={"spider": ...}``, and so every crawler, alive)
    lines = _Lines()
    logging.getLogger().addHandler(lines)
    settings = {
        "EXTENSIONS": {"vastcap_guard.scrapy.BalanceGuard": 500},
        "DOWNLOADER_MIDDLEWARES": {"vastcap_guard.scrapy.CostGuardMiddleware": 50},
        "VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": 0.2,
        "TELNETCONSOLE_ENABLED": False, "LOG_LEVEL": "INFO",
    }
    try:
        from scrapy.crawler import AsyncCrawlerRunner
    except ImportError:  # Scrapy 2.13
        from scrapy.crawler import CrawlerRunner as AsyncCrawlerRunner
    runner: Any = AsyncCrawlerRunner(settings)
    crawlers: weakref.WeakSet[Any] = weakref.WeakSet()
    guards: weakref.WeakSet[Any] = weakref.WeakSet()
    reasons: list[str] = []

    async def crawl_once(spidercls: type[scrapy.Spider], **kwargs: Any) -> None:
        crawler = runner.create_crawler(spidercls)
        crawlers.add(crawler)
        done = runner.crawl(crawler, **kwargs)
        if hasattr(done, "addCallback"):
            await maybe_deferred_to_future(done)
        else:
            await done
        guard = get_guard(crawler)
        assert guard is not None
        guards.add(guard)
        reasons.append(crawler.stats.get_value("finish_reason"))

    with LocalSite(pages=200, delay=0.02) as site:
        for _ in range(18):
            await crawl_once(EmptySpider)
        sb.set_balance(KEY, 0)
        await asyncio.sleep(0.3)  # older than the interval: the last $10 reading is not reused
        await crawl_once(EmptySpider)  # refused at pre-flight
        sb.set_balance(KEY, 10)
        DrainingSpider.sandbox = sb
        await crawl_once(DrainingSpider, url=site.url)  # stopped mid-crawl
        assert site.request_count < 200
    assert reasons == ["finished"] * 18 + ["vastcap_low_balance"] * 2
    await asyncio.sleep(0.1)  # a callback the guard scheduled on the loop may hold one for a turn
    gc.collect()
    logging.getLogger().removeHandler(lines)
    assert len(crawlers) == 0, f"{len(crawlers)} crawler(s) still alive"
    assert len(guards) == 0
    assert not any("Traceback" in line for line in lines.lines)
    assert sum("vastcap_low_balance" in line and "ERROR" in line for line in lines.lines) == 2


class _Lines(logging.Handler):
    """Keeps the formatted lines only (no record, so nothing the record refers to stays alive)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
