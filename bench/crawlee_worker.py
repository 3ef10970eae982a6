"""One benchmark Crawlee crawl (ParselCrawler) against the local site, printing one JSON line.

Usage: ``python bench/crawlee_worker.py CONFIG_JSON`` (started by ``bench/run.py``, not by hand).

CONFIG keys: ``mode`` (``"none"`` | ``"guard"``: ``vastcap_guard.crawlee.guard_crawler``), ``url``,
``key``, ``api_url``, ``interval``, ``concurrency``, ``storage_dir``.

Times in the output are ``time.time()`` (the orchestrator compares them with the site's and the
sandbox's logs): ``started`` (before the guard's pre-flight), ``run_started`` / ``run_returned``
around ``crawler.run()``, ``decided`` (the guard's ERROR record), and ``passed_gate``: every request
that went past the guard's gate, from a pre-navigation hook registered after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any


class Decision(logging.Handler):
    """Notes when the guard decided to stop (its one ERROR line)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.at is None:
            self.at = record.created


async def crawl(cfg: dict[str, Any]) -> dict[str, Any]:
    from crawlee import ConcurrencySettings
    from crawlee.crawlers import ParselCrawler, ParselCrawlingContext

    from vastcap_guard import GuardError
    from vastcap_guard.crawlee import guard_crawler

    n = int(cfg.get("concurrency", 8))
    crawler = ParselCrawler(configure_logging=False, concurrency_settings=ConcurrencySettings(
        min_concurrency=n, desired_concurrency=n, max_concurrency=n))

    @crawler.router.default_handler
    async def handler(ctx: ParselCrawlingContext) -> None:
        await ctx.enqueue_links()

    out: dict[str, Any] = {"mode": cfg["mode"], "started": time.time(), "reason": None, "decided": None,
                           "passed_gate": []}
    if cfg["mode"] == "none":
        out["run_started"] = time.time()
        stats = await crawler.run([cfg["url"]])
        out["run_returned"] = time.time()
    else:
        decision = Decision()
        logging.getLogger("vastcap_guard.crawlee").addHandler(decision)
        g = guard_crawler(crawler, cfg["key"], api_url=cfg["api_url"], interval=cfg["interval"])

        async def after_gate(ctx: Any) -> None:  # registered after the guard: runs after its gate
            out["passed_gate"].append((time.time(), ctx.request.url.split("/", 3)[-1]))

        crawler.pre_navigation_hook(after_gate)
        try:
            async with g:
                out["run_started"] = time.time()
                stats = await crawler.run([cfg["url"]])
                out["run_returned"] = time.time()
        except GuardError as exc:
            out["reason"] = exc.reason
        out["decided"] = decision.at
        out["checks"] = g.snapshot()["checks"]
    out["left"] = time.time()
    out["finished"] = stats.requests_finished
    return out


def main() -> int:
    cfg = json.loads(sys.argv[1])
    os.environ["CRAWLEE_STORAGE_DIR"] = cfg["storage_dir"]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(crawl(cfg))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
