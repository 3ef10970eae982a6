"""A tiny spider for tests/test_testing.py (importable by name in the child process)."""

from __future__ import annotations

from typing import Any

import scrapy


class LinksSpider(scrapy.Spider):
    name = "links"

    def __init__(self, start: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.start_url = start

    async def start(self) -> Any:
        yield scrapy.Request(self.start_url)

    def parse(self, response: Any) -> Any:
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)
