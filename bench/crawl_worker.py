"""One benchmark crawl process: Scrapy crawler(s) against the local site, printing one JSON line.

Usage: ``python bench/crawl_worker.py CONFIG_JSON`` (started by ``bench/run.py``, not by hand).

CONFIG keys:

- ``guard``: ``"none"`` | ``"guard"`` (vastcap_guard.scrapy.BalanceGuard) | ``"naive"`` (a
  hand-rolled extension calling getBalance with ``requests`` on the reactor thread);
- ``api_url``, ``key``, ``interval``: what the guard (or the naive extension) uses;
- ``settings``: Scrapy settings for every crawler;
- ``crawlers``: ``[{"url": ..., "settings": {...}}]``;
- ``lag``: run a 10 ms reactor timer and report its largest delay;
- ``record_schedule``: report every scheduled request (path, time) for the stop benchmark.

Times in the output are ``time.time()`` (the orchestrator on the same machine compares them with
the site's and the sandbox's logs).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import scrapy
from scrapy import signals as scrapy_signals
from twisted.internet.task import LoopingCall

from vastcap_guard import signals as vastcap_signals


class FollowSpider(scrapy.Spider):
    """Follows every link of the local site (the crawl itself: no other work)."""

    name = "bench"

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.url = url

    async def start(self) -> Any:
        yield scrapy.Request(self.url, callback=self.parse)

    def parse(self, response: Any) -> Any:
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)


class NaiveBalanceCheck:
    """The naive baseline: what a hand-rolled extension typically does.

    A blocking ``requests.post(getBalance)`` at ``spider_opened`` and then from a ``LoopingCall``
    every interval, all on the reactor thread; closes the spider below $0.001.
    """

    def __init__(self, crawler: Any) -> None:
        s = crawler.settings
        self.crawler = crawler
        self.url = s.get("NAIVE_API_URL").rstrip("/") + "/getBalance"
        self.key = s.get("NAIVE_API_KEY")
        self.interval = s.getfloat("NAIVE_INTERVAL")
        self.session = requests.Session()
        self.loop: LoopingCall | None = None
        self.checks = 0
        crawler.signals.connect(self.opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.closed, signal=scrapy_signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> NaiveBalanceCheck:
        return cls(crawler)

    def opened(self, spider: Any) -> None:
        self.check()
        self.loop = LoopingCall(self.check)
        self.loop.start(self.interval, now=False)

    def closed(self, spider: Any) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.crawler.stats.set_value("naive/checks", self.checks)

    def check(self) -> None:
        self.checks += 1
        try:
            balance = self.session.post(self.url, json={"clientKey": self.key}, timeout=10).json().get("balance")
        except (requests.RequestException, ValueError):
            return
        if isinstance(balance, (int, float)) and balance < 0.001 and self.crawler.engine is not None:
            self.crawler.engine.close_spider_async(reason="naive_low_balance")


class LagMonitor:
    """A 10 ms reactor timer; records how late each tick fires (the event loop's lag)."""

    PERIOD = 0.010

    def __init__(self, crawler: Any, record: dict[str, Any]) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.record = record
        self.lags: list[float] = []
        self.times: list[float] = []
        self.spans: list[tuple[float, float]] = []
        self.running = False
        self.expected = 0.0
        crawler.signals.connect(self.opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.closed, signal=scrapy_signals.spider_closed)

    def opened(self, spider: Any) -> None:
        self.running = True
        self._schedule()

    def _schedule(self) -> None:
        self.expected = time.perf_counter() + self.PERIOD
        self.reactor.callLater(self.PERIOD, self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lags.append(max(now - self.expected, 0.0))
        self.times.append(now)
        self.spans.append((self.expected, now))
        if self.running:
            self._schedule()

    def closed(self, spider: Any) -> None:
        self.running = False
        lags = sorted(self.lags)
        self.record["lag_ticks"] = len(lags)
        self.record["lag_max"] = lags[-1] if lags else None
        self.record["lag_p99"] = lags[int(0.99 * (len(lags) - 1))] if lags else None
        if self.lags:
            i = max(range(len(self.lags)), key=self.lags.__getitem__)
            self.record["lag_max_at"] = [self.times[i] - self.times[0], self.times[-1] - self.times[i]]
            self.record["lag_top"] = sorted(((round(v * 1000, 1), round(self.times[j] - self.times[0], 2))
                                             for j, v in enumerate(self.lags)), reverse=True)[:8]


class GcPauses:
    """Durations of the garbage collector's full (generation 2) collections: the crawl's own pauses."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []  # (duration, perf_counter at the end)
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._t = time.perf_counter()
        else:
            now = time.perf_counter()
            self.pauses.append((now - self._t, now))


def main() -> int:
    config = json.loads(sys.argv[1])
    gc_pauses = GcPauses()
    mode = config.get("guard", "none")
    settings: dict[str, Any] = {
        "LOG_LEVEL": "INFO",
        "LOG_FILE": config["log_file"],
        "TELNETCONSOLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "RETRY_ENABLED": False,
        "COOKIES_ENABLED": False,
        "LOGSTATS_INTERVAL": 0,
        "EXTENSIONS": {},
    }
    if mode == "guard":
        settings["EXTENSIONS"]["vastcap_guard.scrapy.BalanceGuard"] = 500
        settings.update({"VASTCAP_API_KEY": config["key"], "VASTCAP_API_URL": config["api_url"],
                         "VASTCAP_CHECK_INTERVAL": config["interval"]})
        if config.get("shared_state"):
            settings["VASTCAP_SHARED_STATE"] = config["shared_state"]
    elif mode == "naive":
        settings["EXTENSIONS"][NaiveBalanceCheck] = 500
        settings.update({"NAIVE_API_KEY": config["key"], "NAIVE_API_URL": config["api_url"],
                         "NAIVE_INTERVAL": config["interval"]})
    settings.update(config.get("settings", {}))

    from scrapy.crawler import AsyncCrawlerProcess

    process = AsyncCrawlerProcess(settings)
    results: list[dict[str, Any]] = []
    keep: list[Any] = []
    for i, spec in enumerate(config["crawlers"]):
        record: dict[str, Any] = {"index": i}
        results.append(record)
        spidercls = type(f"Bench{i}", (FollowSpider,), {"name": f"bench{i}",
                                                        "custom_settings": spec.get("settings", {})})
        crawler = process.create_crawler(spidercls)
        record["crawler"] = crawler

        def opened(spider: Any, record: dict[str, Any] = record) -> None:
            record["opened_at"] = time.time()

        def closed(spider: Any, reason: str, record: dict[str, Any] = record) -> None:
            record["closed_at"] = time.time()
            record["reason"] = reason

        def tripped(record: dict[str, Any] = record, **kw: Any) -> None:
            record.setdefault("tripped_at", time.time())
            record["tripped_reason"] = kw.get("reason")

        crawler.signals.connect(opened, signal=scrapy_signals.spider_opened, weak=False)
        crawler.signals.connect(closed, signal=scrapy_signals.spider_closed, weak=False)
        crawler.signals.connect(tripped, signal=vastcap_signals.guard_tripped, weak=False)
        if config.get("record_schedule"):
            sched: list[tuple[str, float]] = []
            record["scheduled"] = sched

            def scheduled(request: Any, sched: list[tuple[str, float]] = sched, **kw: Any) -> None:
                sched.append((urlsplit(request.url).path, time.time()))

            crawler.signals.connect(scheduled, signal=scrapy_signals.request_scheduled, weak=False)
        if config.get("lag"):
            keep.append(LagMonitor(crawler, record))
        process.crawl(crawler, url=spec["url"])
    process.start()

    out: dict[str, Any] = {"crawlers": []}
    for record in results:
        crawler = record.pop("crawler")
        stats = crawler.stats.get_stats()
        record["pages"] = stats.get("response_received_count", 0)
        record["stats"] = {k: v for k, v in stats.items() if k.startswith(("vastcap/", "naive/"))}
        out["crawlers"].append(record)
    pauses = [(end - d, end) for d, end in gc_pauses.pauses]
    for monitor in keep:  # the largest lag with the ticks a full GC collection delayed left out
        clean = [lag for lag, (a, b) in zip(monitor.lags, monitor.spans, strict=True)
                 if not any(pa < b and pe > a for pa, pe in pauses)]
        monitor.record["lag_max_outside_gc"] = max(clean) if clean else None
    out["gc_full_pauses_ms"] = sorted((round(d * 1000, 1) for d, _ in gc_pauses.pauses), reverse=True)[:10]
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
