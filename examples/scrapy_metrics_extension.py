"""A Scrapy extension that adds vastcap-guard's metrics to the process's Prometheus registry.

Copy it into your project (``myproject/vastcap_metrics.py``) and enable it next to the guard::

    ADDONS = {"vastcap_guard.scrapy.Addon": 500}
    EXTENSIONS = {"myproject.vastcap_metrics.VastcapMetrics": 600}

Needs ``pip install "vastcap-guard[scrapy,metrics]"``. It only registers the metrics: the process
serves ``prometheus_client.REGISTRY`` the way it already does (or call
``prometheus_client.start_http_server(9410, addr="127.0.0.1")`` once, for instance at the end of
this module).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from scrapy import signals

from vastcap_guard.metrics import VastcapCollector
from vastcap_guard.scrapy import get_guard

#: one collector per process (a registry refuses a second one); every crawl of the process joins it
COLLECTOR = VastcapCollector()
REGISTRY.register(COLLECTOR)


class VastcapMetrics:
    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> VastcapMetrics:
        return cls(crawler)

    def spider_opened(self, spider: Any) -> None:
        guard = get_guard(self.crawler)  # None when the guard is not enabled for this crawl
        if guard is not None:
            # the label tells the crawls of one process apart (series: key="vc_…9f3a", spider="...")
            COLLECTOR.add(guard, labels={"spider": spider.name})

    def spider_closed(self, spider: Any) -> None:
        guard = get_guard(self.crawler)
        if guard is not None:
            COLLECTOR.remove(guard)
