"""Loud failures when a Crawlee release changes the private attributes the guard relies on
(``vastcap_guard/crawlee/_private.py``), and the browser-launch gate they make possible.

If one of these tests fails after a Crawlee upgrade: ``_autoscaled_pool`` (pause mode) or
``_browser_pool`` (no browser launched after a stop) moved; fix ``_private.py``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from core_keys import KEY
from cr_support import (
    HTTP_KINDS,
    follow_links,
    fresh_queue,
    held_lines,
    make_crawler,
    marked_processes,
    nothing_left_behind,  # noqa: F401
    site_paths,
    until,
)
from crawlee.crawlers import BasicCrawler

from vastcap_guard import LowBalanceError
from vastcap_guard.crawlee import RequestHeld, guard_crawler
from vastcap_guard.crawlee._private import browser_pool, task_pool
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("nothing_left_behind")]


@pytest.mark.parametrize("kind", [*HTTP_KINDS, "playwright", "basic"])
async def test_every_crawler_has_a_task_pool_that_pauses(kind: str) -> None:
    queue = await fresh_queue()
    crawler = BasicCrawler(request_manager=queue) if kind == "basic" else make_crawler(kind, queue)
    pool = task_pool(crawler)
    assert pool is not None, f"{type(crawler).__name__}._autoscaled_pool is gone or cannot pause"
    assert type(pool).__name__ == "AutoscaledPool"
    assert (browser_pool(crawler) is not None) == (kind == "playwright")
    assert not issubclass(RequestHeld, RuntimeError)  # BrowserPool rewrites RuntimeErrors


@pytest.mark.browser
async def test_no_browser_is_launched_after_a_stop(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    """The stop lands while the crawl's first task is about to launch the browser: the guard's
    launch hook (after this test's, which waits) refuses, and Chromium never starts."""
    caplog.set_level(logging.INFO)
    marker = f"--vastcap-guard-test={uuid.uuid4().hex}"
    with LocalSite(pages=5) as site:
        crawler = make_crawler("playwright", await fresh_queue(), concurrency=1, marker=marker)
        follow_links(crawler, [])
        g: Any = None

        async def about_to_launch(page_id: str, plugin: Any) -> None:
            sandbox.set_balance(KEY, 0)
            await until(lambda: g is not None and g.tripped is not None)

        pool = browser_pool(crawler)
        assert pool is not None
        pool.pre_launch_hook(about_to_launch)
        launched: list[str] = []

        async def spy(page_id: str, controller: Any) -> None:
            launched.append(page_id)

        pool.post_launch_hook(spy)
        g = guard_crawler(crawler, KEY, api_url=sandbox.url, interval=0.1)
        with pytest.raises(LowBalanceError):
            async with g:
                stats = await asyncio.wait_for(crawler.run([site.url]), 60)
        assert launched == [] and marked_processes(marker) == [] and site_paths(site) == []
        assert stats.requests_finished == 0 and stats.requests_failed == 0
        # Crawlee names the refusal in its retry line; the request stays queued (one retry counted)
        assert len(held_lines(caplog)) == 1
