"""vastcap-guard with scrapy-playwright: pages rendered in headless Chromium, captchas paid for on VastCap.

Runs on its own, with no real money and no network: it starts a local VastCap sandbox (a small
balance, so you see the guard stop the crawl) and a local site whose pages carry reCAPTCHA widgets.

    python examples/scrapy_playwright/crawl.py                  # another job drains the account: stop
    python examples/scrapy_playwright/crawl.py --drain-after 0  # $0.05 runs down; paid solves it
                                                                # cannot afford are dropped
    python examples/scrapy_playwright/crawl.py --balance 0      # refused at start: no browser at all
    VASTCAP_API_KEY=... python examples/scrapy_playwright/crawl.py --api-url http://127.0.0.1:8787/api/solver \\
        --site-url http://127.0.0.1:8788/                       # your own sandbox / site

The guard needs nothing scrapy-playwright specific: the add-on line below is all. It checks the
balance before Playwright starts (a refused crawl launches no browser), and when it closes the
spider mid-crawl scrapy-playwright closes its pages, contexts and browser as the crawl ends.
Needs ``pip install "vastcap-guard[scrapy]" scrapy-playwright`` and a Chromium
(``playwright install chromium``, or Debian's ``/usr/bin/chromium`` as below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy import signals
from scrapy.http import Response

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CAPTCHA_COST = "0.002"  # USD per solved captcha (the sandbox's price)

SETTINGS: dict[str, Any] = {
    # -- the guard: one line ------------------------------------------------------------------
    "ADDONS": {"vastcap_guard.scrapy.Addon": 500},
    "VASTCAP_CHECK_INTERVAL": 1,       # seconds (60 is a better default for real crawls)
    "VASTCAP_WARN_MINUTES": 30,        # warn when the money lasts less than this at the current spend
    # -- scrapy-playwright --------------------------------------------------------------------
    "DOWNLOAD_HANDLERS": {"http": HANDLER, "https": HANDLER},
    "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    "PLAYWRIGHT_BROWSER_TYPE": "chromium",
    "PLAYWRIGHT_LAUNCH_OPTIONS": {
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    },
    # -- the crawl ----------------------------------------------------------------------------
    "CONCURRENT_REQUESTS": 4,
    "ROBOTSTXT_OBEY": False,
    "TELNETCONSOLE_ENABLED": False,
    "LOG_LEVEL": "INFO",
}


class RenderedCaptchas(scrapy.Spider):
    """Render every page in Chromium; solve the captcha of a page that has one, then follow its links."""

    name = "rendered_captchas"

    def __init__(self, site_url: str, api_url: str, api_key: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.site_url, self.api_url, self.api_key = site_url, api_url.rstrip("/"), api_key

    async def start(self) -> AsyncIterator[Any]:
        yield self.page(self.site_url)

    def page(self, url: str) -> scrapy.Request:
        return scrapy.Request(url, meta={"playwright": True}, callback=self.parse)

    def api(self, method: str, payload: dict[str, Any], **kw: Any) -> scrapy.Request:
        # a plain HTTP request (no meta["playwright"]): scrapy-playwright passes it to Scrapy's own
        # handler. A createTask carries its cost: CostGuardMiddleware drops it if the account cannot pay.
        return scrapy.Request(f"{self.api_url}/{method}", method="POST", dont_filter=True,
                              body=json.dumps({"clientKey": self.api_key, **payload}),
                              headers={"Content-Type": "application/json"}, **kw)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        links = [response.urljoin(h) for h in response.css("a::attr(href)").getall()]
        site_key = response.css("div.g-recaptcha::attr(data-sitekey)").get()
        if not site_key:
            yield {"url": response.url, "captcha": False}
            for url in links:
                yield self.page(url)
            return
        task = {"type": "RecaptchaV2TaskProxyless", "websiteURL": response.url, "websiteKey": site_key}
        yield self.api("createTask", {"task": task}, meta={"vastcap_cost": CAPTCHA_COST},
                       callback=self.created, cb_kwargs={"url": response.url, "links": links})

    async def created(self, response: Response, url: str, links: list[str]) -> AsyncIterator[Any]:
        answer = response.json()
        if "taskId" in answer:
            yield self.api("getTaskResult", {"taskId": answer["taskId"]}, callback=self.result,
                           cb_kwargs={"url": url, "links": links, "task_id": answer["taskId"]})

    async def result(self, response: Response, url: str, links: list[str], task_id: str) -> AsyncIterator[Any]:
        answer = response.json()
        if answer.get("status") == "processing":
            await asyncio.sleep(0.25)
            yield self.api("getTaskResult", {"taskId": task_id}, callback=self.result,
                           cb_kwargs={"url": url, "links": links, "task_id": task_id})
            return
        if answer.get("status") == "ready":
            yield {"url": url, "captcha": True}
            for link in links:
                yield self.page(link)


@contextlib.contextmanager
def services(args: argparse.Namespace) -> Iterator[tuple[str, str, str, Sandbox | None]]:
    """(site URL, API URL, key, sandbox or None): local ones unless given on the command line."""
    with contextlib.ExitStack() as stack:
        sandbox = None
        if args.api_url:
            api_url, key = args.api_url, os.environ.get("VASTCAP_API_KEY", "")
        else:
            sandbox = stack.enter_context(Sandbox({"vc_example_key_0000": args.balance}, price=CAPTCHA_COST))
            api_url, key = sandbox.url, sandbox.key
        site_url = args.site_url or stack.enter_context(LocalSite(pages=args.pages, captcha_every=3)).url
        yield site_url, api_url, key, sandbox


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--balance", default="0.05", help="balance of the local sandbox account (USD, default 0.05)")
    p.add_argument("--pages", type=int, default=300, help="pages of the local site (default 300)")
    p.add_argument("--drain-after", type=float, default=4.0, metavar="SECONDS",
                   help="local sandbox: another job spends the whole balance this long after the first page "
                        "(0: never)")
    p.add_argument("--api-url", help="use this VastCap API (key from VASTCAP_API_KEY) instead of a sandbox")
    p.add_argument("--site-url", help="crawl this site instead of a local one")
    args = p.parse_args(argv)

    from scrapy.crawler import CrawlerProcess

    with services(args) as (site_url, api_url, key, sandbox):
        process = CrawlerProcess({**SETTINGS, "VASTCAP_API_URL": api_url, "VASTCAP_API_KEY": key})
        crawler = process.create_crawler(RenderedCaptchas)
        process.crawl(crawler, site_url=site_url, api_url=api_url, api_key=key)
        if sandbox is not None and args.drain_after > 0:
            # counted from the first page rendered, so the stop comes mid-crawl however slow the
            # browser is to start
            drain = threading.Timer(args.drain_after, sandbox.set_balance, (key, 0))
            drain.daemon = True

            def first_page(**_: Any) -> None:
                crawler.signals.disconnect(first_page, signal=signals.item_scraped)
                drain.start()

            crawler.signals.connect(first_page, signal=signals.item_scraped)
        process.start()
        stats = crawler.stats.get_stats() if crawler.stats else {}
        summary = {
            "finish_reason": stats.get("finish_reason"),
            "pages": stats.get("item_scraped_count", 0),
            "browsers": stats.get("playwright/browser_count", 0),
            "balance": stats.get("vastcap/balance"),
            "spent": stats.get("vastcap/spent"),
            "spend_per_minute": stats.get("vastcap/spend_per_minute"),
            "minutes_left": stats.get("vastcap/minutes_left"),
        }
        if sandbox is not None:
            summary["sandbox_balance"] = str(sandbox.balance(key))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
