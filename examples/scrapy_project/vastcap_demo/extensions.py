"""ResultFile: write the crawl's outcome as JSON when ``DEMO_RESULT_FILE`` is set.

``vastcap-guard demo`` and the tests read it instead of parsing the log. Without the setting the
extension is disabled (``NotConfigured``).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from scrapy import signals
from scrapy.exceptions import NotConfigured


class ResultFile:
    def __init__(self, crawler: Any, path: str) -> None:
        self.crawler = crawler
        self.path = path
        self.reason: str | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> ResultFile:
        path = crawler.settings.get("DEMO_RESULT_FILE") or os.environ.get("DEMO_RESULT_FILE")
        if not path:
            raise NotConfigured
        ext = cls(crawler, path)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    def spider_closed(self, spider: Any, reason: str) -> None:
        self.reason = reason
        self.write()

    def engine_stopped(self) -> None:
        # again, with the final stats (not sent when the crawl was refused before it started)
        if self.reason is not None:
            self.write()

    def write(self) -> None:
        stats = self.crawler.stats.get_stats()
        data = {
            "finish_reason": self.reason or stats.get("finish_reason"),
            "stats": {k: _plain(v) for k, v in stats.items()},
        }
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
