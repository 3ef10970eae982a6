"""Helpers for the Crawlee adapter tests (no ``conftest.py``: the ``cr_`` prefix keeps the module
name apart from other suites' helpers, which share ``sys.path`` in one pytest run).

Crawlee keeps its storages in ``CRAWLEE_STORAGE_DIR``: a temp dir, set here before any crawler
is built. Every crawl gets a request queue of its own (Crawlee caches the default one per process).
Crawlee's cached storages hold asyncio locks bound to the loop that first waited on them, so every
Crawlee test runs on one event loop: ``pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

os.environ.setdefault("CRAWLEE_STORAGE_DIR", tempfile.mkdtemp(prefix="vastcap-crawlee-tests-"))

from crawlee import ConcurrencySettings
from crawlee.crawlers import BasicCrawler
from crawlee.storages import RequestQueue

from vastcap_guard.poller import active_pollers
from vastcap_guard.site import LocalSite

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HTTP_KINDS = ["parsel", "beautifulsoup", "http"]
HREF = re.compile(rb'href="(/page/\d+)"')


def pinned(n: int) -> ConcurrencySettings:
    """Exactly ``n`` tasks at a time, so requests can be counted."""
    return ConcurrencySettings(min_concurrency=n, max_concurrency=n, desired_concurrency=n)


async def fresh_queue() -> RequestQueue:
    return await RequestQueue.open(alias=f"t{uuid.uuid4().hex}")


def need_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")


def make_crawler(kind: str, queue: RequestQueue, *, concurrency: int = 2, marker: str | None = None,
                 **kwargs: Any) -> BasicCrawler[Any, Any]:
    """A crawler of ``kind`` on ``queue``; Playwright runs Debian's Chromium tagged with ``marker``."""
    kwargs.setdefault("concurrency_settings", pinned(concurrency))
    kwargs.setdefault("request_handler_timeout", timedelta(seconds=30))
    kwargs["request_manager"] = queue
    if kind == "parsel":
        from crawlee.crawlers import ParselCrawler

        return ParselCrawler(**kwargs)
    if kind == "beautifulsoup":
        from crawlee.crawlers import BeautifulSoupCrawler

        return BeautifulSoupCrawler(**kwargs)
    if kind == "http":
        from crawlee.crawlers import HttpCrawler

        return HttpCrawler(**kwargs)
    if kind == "playwright":
        from crawlee.crawlers import PlaywrightCrawler

        need_chromium()
        args = [*CHROMIUM_ARGS, *([marker] if marker else [])]
        return PlaywrightCrawler(headless=True, browser_launch_options={"executable_path": CHROMIUM, "args": args},
                                 **kwargs)
    raise ValueError(kind)


def follow_links(crawler: BasicCrawler[Any, Any], handled: list[str],
                 before: Callable[[Any], Awaitable[None]] | None = None) -> None:
    """The crawl's request handler: record the page, then enqueue the site's links (any crawler)."""

    parsed = type(crawler).__name__ != "HttpCrawler"  # its enqueue_links() finds nothing: no parser

    @crawler.router.default_handler
    async def handler(ctx: Any) -> None:
        handled.append(path_of(ctx.request.url))
        if before is not None:
            await before(ctx)
        if parsed:
            await ctx.enqueue_links()
        else:
            body = await ctx.http_response.read()
            base = ctx.request.url.split("/page/")[0].rstrip("/")
            await ctx.add_requests([base + m.decode() for m in HREF.findall(body)])


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"


def all_paths(site: LocalSite) -> list[str]:
    return ["/", *(f"/page/{n}" for n in range(site.pages))]


def site_paths(site: LocalSite) -> list[str]:
    """What reached the site (the browser's favicon requests left out)."""
    return [r.path for r in site.requests if r.path != "/favicon.ico"]


# -- processes, threads, logs -------------------------------------------------------------------------
def marked_processes(marker: str) -> list[int]:
    """Live processes (zombies left out) whose command line carries ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait on the loop (never blocking it) until ``predicate()``; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition was not reached in time")
        await asyncio.sleep(0.01)


def poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vastcap-guard-poller")]


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """The test leaves no poller thread behind."""
    before = set(poller_threads())
    pollers = active_pollers()
    yield
    assert wait_until(lambda: not [t for t in poller_threads() if t not in before]), "a poller thread was left"
    assert active_pollers() <= pollers


@pytest.fixture(scope="module", name="site")
def site_fixture() -> Iterator[LocalSite]:
    """A 40-page local site for a test module (a module that needs another size defines its own)."""
    with LocalSite(pages=40) as s:
        yield s


@pytest.fixture(autouse=True, name="fresh_site")
def fresh_site_fixture(site: LocalSite) -> None:
    """Each test counts only its own requests to the module's site."""
    site.reset()


def guard_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("vastcap_guard")]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback at INFO and above (Crawlee's own DEBUG lines carry every request error's)."""
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    with_exc = [f"{r.name}: {r.getMessage()[:200]}" for r in shown if r.exc_info]
    assert with_exc == [], with_exc
    assert not [r for r in shown if "Traceback" in r.getMessage()]


def held_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Crawlee's retry lines for requests the gate handed back to the queue."""
    return [r.getMessage() for r in caplog.records if "this request was not sent" in r.getMessage()]


class Parking:
    """A pre-navigation hook registered *before* the guard's (so it runs first) that makes a stop or
    a pause land at a known point: once ``after`` pages were handled, every request reaching it
    waits there; when ``count`` wait (every task of a pinned crawl: none is in flight), ``decide()``
    runs (the test empties the account); they all go on to the guard's gate once ``released()``.
    """

    def __init__(self, crawler: BasicCrawler[Any, Any], site: LocalSite, handled: list[str], *, after: int,
                 count: int, decide: Callable[[], None], released: Callable[[], bool]) -> None:
        self.site, self.handled = site, handled
        self.after, self.count = after, count
        self.decide, self.released = decide, released
        self.parked: list[str] = []
        #: what had reached the site when the guard's decision let the parked requests go on
        self.hits_at_decision: list[str] | None = None
        self._done = False
        hook = getattr(crawler, "pre_navigation_hook")  # noqa: B009 - BasicCrawler has none
        hook(self.hook)

    async def hook(self, ctx: Any) -> None:
        if self._done or len(self.handled) < self.after:
            return
        self.parked.append(path_of(ctx.request.url))
        if len(self.parked) == self.count:
            self.decide()
        await until(self.released)
        if not self._done:
            self._done = True
            self.hits_at_decision = site_paths(self.site)
