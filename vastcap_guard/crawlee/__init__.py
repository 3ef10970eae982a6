"""Guard Crawlee crawls (any crawler: Parsel, BeautifulSoup, HTTP, Playwright) against a VastCap
account that cannot pay.

>>> from vastcap_guard.crawlee import guard_crawler      # doctest: +SKIP
>>> crawler = ParselCrawler()
>>> async with guard_crawler(crawler, interval=60, max_spend="5") as g:
...     await crawler.run(["https://example.com/"])

See ``docs/crawlee.md`` for the full reference.
"""

from __future__ import annotations

try:
    import crawlee  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("vastcap_guard.crawlee needs Crawlee: pip install 'vastcap-guard[crawlee]'") from exc

from ._guard import CrawlerGuard, RequestHeld, guard_crawler

__all__ = ["CrawlerGuard", "RequestHeld", "guard_crawler"]
