"""A guarded Crawlee crawl that runs offline against the VastCap sandbox and a local site.

    python examples/crawlee_crawl.py

A ``ParselCrawler`` crawls a local site whose every third page carries a reCAPTCHA, and pays the
sandbox $0.002 to solve each one (``createTask`` / ``getTaskResult``, sent with Crawlee's own
``send_request``). The account holds $0.02: the money runs out part-way, the guard stops the crawl
the Crawlee way (``crawler.stop``; ``run()`` returns its statistics) and the ``async with`` block
raises ``LowBalanceError``. Then the account is topped up and a new crawler on the same request
queue crawls what was left: every page once, none lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

os.environ.setdefault("CRAWLEE_STORAGE_DIR", tempfile.mkdtemp(prefix="crawlee-example-"))

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext
from crawlee.storages import RequestQueue

from vastcap_guard import GuardError, LowBalanceError
from vastcap_guard.crawlee import CrawlerGuard, guard_crawler
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import SITE_KEY, LocalSite

PRICE = "0.002"  # what the sandbox charges per solved captcha


def build(queue: RequestQueue, sandbox: Sandbox, crawled: list[str]) -> tuple[ParselCrawler, CrawlerGuard]:
    crawler = ParselCrawler(request_manager=queue, concurrency_settings=ConcurrencySettings(desired_concurrency=4, max_concurrency=4))
    g = guard_crawler(crawler, sandbox.key, api_url=sandbox.url, interval=0.5)

    @crawler.router.default_handler
    async def page(ctx: ParselCrawlingContext) -> None:
        if ctx.selector.css(".g-recaptcha"):
            await g.ensure_funds(PRICE)  # refuses (and stops the crawl) if the account cannot pay
            await solve(ctx, sandbox)
        crawled.append(ctx.request.url)
        await ctx.enqueue_links()

    return crawler, g


async def solve(ctx: ParselCrawlingContext, sandbox: Sandbox) -> str:
    async def call(method: str, **payload: object) -> dict[str, object]:
        body = json.dumps({"clientKey": sandbox.key, **payload}).encode()
        response = await ctx.send_request(f"{sandbox.url}/{method}", method="POST", payload=body,
                                          headers={"Content-Type": "application/json"})
        return dict(json.loads(await response.read()))

    task = await call("createTask", task={"type": "RecaptchaV2TaskProxyless", "websiteURL": ctx.request.url,
                                         "websiteKey": SITE_KEY})
    while True:
        result = await call("getTaskResult", taskId=task.get("taskId"))
        if result.get("status") != "processing":
            return str(result.get("solution"))
        await asyncio.sleep(0.05)


async def main() -> int:
    with Sandbox({"vc_example_key_000000000001": "0.02"}, price=PRICE) as sandbox, \
            LocalSite(pages=60, captcha_every=3) as site:
        queue = await RequestQueue.open(alias="vastcap-example")
        crawled: list[str] = []
        crawler, g = build(queue, sandbox, crawled)
        try:
            async with g:
                stats = await crawler.run([site.url])
            print(f"finished without a stop ({len(crawled)} pages)")
            return 1
        except LowBalanceError as exc:
            print(f"stopped: {exc.reason}, balance ${exc.balance}; crawler.run() returned "
                  f"{stats.requests_finished} finished requests; guard counters: {g.snapshot()}")
        except GuardError as exc:
            print(f"refused: {exc.reason}: {exc}")
            return 1
        before = len(crawled)
        sandbox.set_balance(sandbox.key, "1.00")  # topped up from the dashboard
        await asyncio.sleep(1)  # a reading younger than the interval is reused: let the last one age
        again, g2 = build(queue, sandbox, crawled)  # a new crawler on the same queue resumes
        async with g2:
            await again.run(purge_request_queue=False)
        complete = sorted(crawled) == sorted([site.url, *(site.page_url(n) for n in range(site.pages))])
        print(f"resumed after a top-up: {len(crawled) - before} more pages; every page crawled once: {complete}")
        return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
