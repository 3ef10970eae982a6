"""In-process crawls, the way Scrapy tests its own extensions (pytest-twisted, asyncio reactor).

Run with ``python -m pytest --reactor=asyncio tests/twisted``.
"""

from __future__ import annotations

import logging
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
