"""What differs between Scrapy 2.13 and the newest release, and between reactor modes.

Three ways Scrapy can run code:

- the asyncio reactor (the default since 2.13) and reactorless mode (``TWISTED_REACTOR_ENABLED =
  False``, 2.15+): an asyncio loop runs; coroutines are asyncio tasks and may await asyncio futures;
- a non-asyncio Twisted reactor (``EPollReactor``...): coroutines are driven by
  ``Deferred.fromCoroutine`` and may only await Deferreds.

:class:`LoopBridge` hides the difference: it hands calls from other threads to the right loop and
turns a :class:`concurrent.futures.Future` into something the running coroutine can await.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import scrapy

__all__ = [
    "CLOSESPIDER_FROM_SPIDER_OPENED",
    "SCRAPY_VERSION",
    "LoopBridge",
    "close_download_handlers",
    "close_spider",
    "hold_browser_launch",
    "scrapy_version",
]

logger = logging.getLogger("vastcap_guard.scrapy")

T = TypeVar("T")


def scrapy_version(text: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of the installed Scrapy (``"2.19.0"`` -> ``(2, 19)``)."""
    parts = (text or scrapy.__version__).split(".")
    numbers: list[int] = []
    for part in parts[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits) if digits else 0)
    while len(numbers) < 2:
        numbers.append(0)
    return numbers[0], numbers[1]


SCRAPY_VERSION = scrapy_version()
#: Scrapy honours ``CloseSpider`` raised from a ``spider_opened`` handler (2.18+)
CLOSESPIDER_FROM_SPIDER_OPENED = SCRAPY_VERSION >= (2, 18)


def asyncio_available() -> bool:
    """An asyncio loop runs Scrapy's coroutines (asyncio reactor or reactorless mode)."""
    try:
        from scrapy.utils.asyncio import is_asyncio_available  # Scrapy 2.14+
    except ImportError:  # Scrapy 2.13
        from scrapy.utils.reactor import is_asyncio_reactor_installed

        return bool(is_asyncio_reactor_installed())
    return bool(is_asyncio_available())


class LoopBridge:
    """The thread and event loop Scrapy runs on, captured from inside a Scrapy callback."""

    def __init__(self) -> None:
        self.asyncio = asyncio_available()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reactor: Any = None
        if self.asyncio:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - Scrapy runs its handlers on the loop
                self._loop = asyncio.get_event_loop()
        else:
            from twisted.internet import reactor

            self._reactor = reactor

    def call_soon_threadsafe(self, func: Callable[..., object], *args: object) -> bool:
        """Run ``func(*args)`` on Scrapy's loop thread; False when the loop is gone."""
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(func, *args)
            else:
                self._reactor.callFromThread(func, *args)
        except RuntimeError:  # the loop was closed: the crawl is over
            return False
        return True

    def call_later(self, delay: float, func: Callable[..., object], *args: object) -> None:
        if self._loop is not None:
            self._loop.call_later(delay, func, *args)
        else:
            self._reactor.callLater(delay, func, *args)

    def wait(self, future: concurrent.futures.Future[T], timeout: float | None = None) -> Awaitable[T]:
        """Something the current Scrapy coroutine can await for ``future``'s result.

        With a ``timeout``, raises :class:`TimeoutError` after that many seconds (the future is
        then cancelled). The futures of :class:`~vastcap_guard.run.GuardedRun` carry their own
        deadline, so the guard passes none.
        """
        if self._loop is not None:
            return asyncio.wait_for(asyncio.wrap_future(future, loop=self._loop), timeout)
        deferred: Awaitable[T] = self._deferred(future, timeout)
        return deferred

    def _deferred(self, future: concurrent.futures.Future[T], timeout: float | None) -> Any:
        from twisted.internet import defer

        d: defer.Deferred[T] = defer.Deferred()
        reactor = self._reactor

        def fire(f: concurrent.futures.Future[T]) -> None:
            if d.called:
                return
            if f.cancelled():
                d.errback(TimeoutError("cancelled"))
            elif f.exception() is not None:
                d.errback(f.exception())
            else:
                d.callback(f.result())

        def on_done(f: concurrent.futures.Future[T]) -> None:
            reactor.callFromThread(fire, f)

        def on_timeout() -> None:
            if not d.called:
                future.cancel()
                d.errback(TimeoutError(f"no answer within {timeout:g}s"))

        if timeout is not None:
            timer = reactor.callLater(timeout, on_timeout)

            def stop_timer(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            d.addBoth(stop_timer)
        future.add_done_callback(on_done)
        return d


def close_spider(crawler: Any, reason: str) -> Any:
    """Ask the engine to close the spider with ``reason``, without blocking and without waiting.

    Uses ``close_spider_async`` (Scrapy 2.14+, no deprecation warning) and ``close_spider``
    before that. Returns the Deferred of the close (keep a reference to it), or None when there
    is no open spider (nothing to close).
    """
    engine = getattr(crawler, "engine", None)
    spider = getattr(engine, "spider", None)
    if engine is None or spider is None:
        return None
    from scrapy.utils.defer import deferred_from_coro

    try:
        if hasattr(engine, "close_spider_async"):
            d = deferred_from_coro(engine.close_spider_async(reason=reason))
        else:  # Scrapy 2.13
            d = engine.close_spider(spider, reason)
    except RuntimeError:  # "Spider not opened" / "Engine slot not assigned": already closed
        return None

    def failed(failure: Any) -> None:
        logger.warning(
            "vastcap-guard: closing the spider (%s) failed: %s", reason, failure.getErrorMessage()
        )

    if d is not None and hasattr(d, "addErrback"):
        d.addErrback(failed)
    return d


def hold_browser_launch(crawler: Any) -> int:
    """Keep scrapy-playwright from starting Playwright for a crawl the guard refused to start.

    Scrapy < 2.18 cannot refuse a start from ``spider_opened``, so it still sends
    ``engine_started``, where scrapy-playwright's download handler starts Playwright (a driver
    process) and launches a browser for any ``PLAYWRIGHT_CONTEXTS``. The refused crawl sends no
    request, so none of that is needed: disconnect the handler's ``engine_started`` receivers
    (its ``close`` copes with never having started). Returns how many were disconnected.
    """
    from pydispatch import dispatcher  # type: ignore[import-untyped]
    from scrapy import signals

    manager = crawler.signals
    found = 0
    for receiver in list(dispatcher.liveReceivers(dispatcher.getAllReceivers(manager.sender,
                                                                             signals.engine_started))):
        owner = getattr(receiver, "__self__", None)
        if owner is not None and type(owner).__module__.split(".")[0] == "scrapy_playwright":
            manager.disconnect(receiver, signal=signals.engine_started)
            found += 1
    if found:
        logger.debug("vastcap-guard: the crawl was refused; scrapy-playwright will not start a browser.")
    return found


async def close_download_handlers(crawler: Any) -> bool:
    """Close the download handlers of a crawl whose engine never started (a refused start).

    Scrapy closes its download handlers on ``engine_stopped``, which a crawl refused from
    ``spider_opened`` (2.18+) never sends: in reactorless mode their aiohttp sessions are then
    left open, and ``[asyncio] ERROR: Unclosed client session`` appears in the log when the crawler
    is collected. Uses ``engine.downloader.handlers._close`` (private; tested in
    ``tests/scrapy/test_scrapy_units.py``). Returns whether the handlers were closed.
    """
    engine = getattr(crawler, "engine", None)
    if engine is None or getattr(engine, "running", True):
        return False
    handlers = getattr(getattr(engine, "downloader", None), "handlers", None)
    close = getattr(handlers, "_close", None)
    if close is None:
        return False
    try:
        from scrapy.utils.defer import maybe_deferred_to_future

        result = close()
        if hasattr(result, "addCallback"):
            await maybe_deferred_to_future(result)
        elif hasattr(result, "__await__"):
            await result
    except Exception:  # best effort: the crawl is over either way
        logger.debug("closing the download handlers of a refused crawl failed", exc_info=True)
        return False
    return True
