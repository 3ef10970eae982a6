"""One real crawl with the guard and ``examples/scrapy_metrics_extension.py``, for tests/test_metrics.py.

    python metrics_crawl.py PAGE_URL        (VASTCAP_API_KEY and VASTCAP_API_URL from the environment)

Prints one JSON line: what ``prometheus_client.REGISTRY`` exposed while the spider parsed its page
(``during``), after the crawl (``after``), and the crawl's ``finish_reason``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import scrapy
from prometheus_client import REGISTRY, generate_latest
from scrapy.crawler import CrawlerProcess

seen: dict[str, Any] = {}


class Probe(scrapy.Spider):
    name = "metrics_probe"

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.start_urls = [url]

    def parse(self, response: Any) -> None:
        seen["during"] = generate_latest(REGISTRY).decode()


def main() -> None:
    process = CrawlerProcess(settings={
        "ADDONS": {"vastcap_guard.scrapy.Addon": 500},
        "EXTENSIONS": {"scrapy_metrics_extension.VastcapMetrics": 600},
        "VASTCAP_CHECK_INTERVAL": 1,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "DEBUG",
    })
    crawler = process.create_crawler(Probe)
    process.crawl(crawler, url=sys.argv[1])
    process.start()
    seen["after"] = generate_latest(REGISTRY).decode()
    seen["finish_reason"] = crawler.stats.get_value("finish_reason")
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
