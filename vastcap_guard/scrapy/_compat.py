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
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import scrapy

__all__ = [
    "CLOSESPIDER_FROM_SPIDER_OPENED",
    "SCRAPY_VERSION",
    "DownloaderGate",
    "LoopBridge",
    "close_download_handlers",
    "close_spider",
    "engine_of",
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

    def call_later(self, delay: float, func: Callable[..., object], *args: object) -> Callable[[], None]:
        """Run ``func(*args)`` on Scrapy's loop in ``delay`` seconds; returns a function that
        cancels it (a no-op once it ran), so a long timer never keeps a finished crawl alive."""
        if self._loop is not None:
            handle = self._loop.call_later(delay, func, *args)
            return handle.cancel
        call = self._reactor.callLater(delay, func, *args)

        def cancel() -> None:
            if call.active():
                call.cancel()

        return cancel

    def wait(self, future: concurrent.futures.Future[T]) -> Awaitable[T]:
        """Something the current Scrapy coroutine can await for ``future``'s result.

        Cancelling the awaiting coroutine (``asyncio.wait_for`` around a pipeline's
        ``ensure_funds``) never cancels ``future``: other coroutines may be waiting on the same one
        (the end of a pause). The futures of :class:`~vastcap_guard.run.GuardedRun` carry their own
        deadline.
        """
        if self._loop is not None:
            return asyncio.shield(asyncio.wrap_future(future, loop=self._loop))
        deferred: Awaitable[T] = self._deferred(future)
        return deferred

    def _deferred(self, future: concurrent.futures.Future[T]) -> Any:
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

        future.add_done_callback(on_done)
        return d


def engine_of(crawler: Any) -> Any:
    """``crawler.engine``, or None before the crawl starts (Scrapy 2.14+ raises RuntimeError there)."""
    try:
        return crawler.engine
    except (AttributeError, RuntimeError):
        return None


def close_spider(crawler: Any, reason: str) -> Any:
    """Ask the engine to close the spider with ``reason``, without blocking and without waiting.

    Uses ``close_spider_async`` (Scrapy 2.14+, no deprecation warning) and ``close_spider``
    before that. Returns the Deferred of the close (keep a reference to it), or None when there
    is no open spider (nothing to close).
    """
    engine = engine_of(crawler)
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
    engine = engine_of(crawler)
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


# -- the downloader gate ------------------------------------------------------------------------
# Requests the engine took from the scheduler wait in the downloader's per-slot queues (up to
# CONCURRENT_REQUESTS - 1 of them; DOWNLOAD_DELAY lets one out per delay). Neither a close nor
# ``engine.pause()`` stops them: a close waits until every one was downloaded, and a paused engine
# still lets them out. No public API reaches them, so the gate uses these private parts of Scrapy
# (the same in 2.13 and 2.19; tests/scrapy/test_scrapy_fence.py fails loudly when they change):
#
#   engine.downloader.slots            dict[str, Slot]
#   Slot.queue                         deque of (Request, Deferred): the Deferred is what the
#                                      downloader middleware chain waits on
#   Slot.concurrency                   Downloader._process_queue pops only while
#                                      slot.free_transfer_slots() (concurrency - transferring) > 0:
#                                      0 closes the tap without touching the delay timer
#   Downloader._process_queue          (spider, slot) in 2.13, (slot) since 2.14: restarts a slot
#   engine._slot.closing               not None once a close started (it waits for held requests)
#   engine._slot.nextcall.schedule()   wakes the engine now (else its 5 s heartbeat does)
#
# and the public ``request_reached_downloader`` signal, sent after a request's slot exists and
# before the request is appended to its queue: the gate closes the tap of slots created later.


def _process_queue_takes_spider() -> bool:
    from scrapy.core.downloader import Downloader

    return "spider" in inspect.signature(Downloader._process_queue).parameters


class DownloaderGate:
    """Holds, releases or drops the requests waiting in one crawl's downloader slots.

    - :meth:`hold`: pause the engine (nothing more leaves the scheduler) and keep every queued
      request in its slot, also those that reach a slot later; requests already on the wire finish;
    - :meth:`release`: let them go, restart the slots and wake the engine at once;
    - :meth:`drop`: fail every queued request (now and those that arrive later) with
      ``IgnoreRequest``, which Scrapy neither logs nor retries; their errbacks and the downloader
      middlewares' ``process_exception`` see it. For a close that must send nothing more.

    While it holds, a close started elsewhere (``CLOSESPIDER_TIMEOUT``, Ctrl-C) would wait forever
    for the held requests: the gate notices it within a quarter of a second, drops them and calls
    ``on_closing``.
    """

    WATCH_EVERY = 0.25

    def __init__(self, crawler: Any, bridge: LoopBridge,
                 on_closing: Callable[[], None] | None = None) -> None:
        self.crawler = crawler
        self._bridge = bridge
        self._on_closing = on_closing
        #: slot key -> (slot, its concurrency before the hold)
        self._saved: dict[str, tuple[Any, int]] = {}
        self.held = False
        #: why queued requests are failed (None: they are held or flowing)
        self.dropping: str | None = None
        self._paused_engine = False
        self._drop_pending = False
        self._connected = False
        self._cancel_watch: Callable[[], None] | None = None

    # -- state of the engine -------------------------------------------------------------------
    @property
    def _engine(self) -> Any:
        return engine_of(self.crawler)

    def engine_closing(self) -> bool:
        """A close of the spider has started (or the spider is gone)."""
        engine = self._engine
        slot = getattr(engine, "_slot", None)
        return engine is None or slot is None or slot.closing is not None

    def wake_engine(self) -> bool:
        """Have the engine take requests from its scheduler on the next loop turn."""
        slot = getattr(self._engine, "_slot", None)
        if slot is None or slot.closing is not None:
            return False
        slot.nextcall.schedule()
        return True

    # -- holding -------------------------------------------------------------------------------
    def hold(self) -> None:
        engine = self._engine
        if engine is None or self.held:
            return
        self.held = True
        if not engine.paused:
            engine.pause()
            self._paused_engine = True
        for key, slot in list(engine.downloader.slots.items()):
            self._hold_slot(key, slot)
        self._connect()
        self._watch()

    def release(self) -> None:
        """Let the held requests go and wake the engine (not while dropping)."""
        engine = self._engine
        if not self.held or self.dropping is not None or engine is None:
            return
        self.held = False
        self._stop_watch()
        self._disconnect()
        saved, self._saved = self._saved, {}
        for slot, concurrency in saved.values():
            if slot.concurrency == 0:  # unless someone else changed it meanwhile
                slot.concurrency = concurrency
        if self._paused_engine:
            self._paused_engine = False
            engine.unpause()
        downloader = engine.downloader
        with_spider = _process_queue_takes_spider()
        for slot, _ in saved.values():
            if with_spider:
                downloader._process_queue(engine.spider, slot)
            else:
                downloader._process_queue(slot)
        self.wake_engine()

    def drop(self, why: str) -> int:
        """Fail every queued request with ``IgnoreRequest`` (and those that arrive later);
        returns how many were failed now."""
        self.hold()
        self.dropping = why
        self._stop_watch()
        return self._fail_queued()

    def close(self) -> None:
        """The crawl is over: no more watching, no more signal handler."""
        self._stop_watch()
        self._disconnect()

    def _hold_slot(self, key: str, slot: Any) -> None:
        if key not in self._saved:
            self._saved[key] = (slot, slot.concurrency)
            slot.concurrency = 0

    def _connect(self) -> None:
        if not self._connected:
            from scrapy import signals

            self.crawler.signals.connect(self._reached, signal=signals.request_reached_downloader)
            self._connected = True

    def _disconnect(self) -> None:
        if self._connected:
            from scrapy import signals

            self.crawler.signals.disconnect(self._reached, signal=signals.request_reached_downloader)
            self._connected = False

    def _reached(self, request: Any, spider: Any = None) -> None:
        """A request reached its slot (it is appended to the queue right after this)."""
        engine = self._engine
        if engine is None or not self.held:
            return
        downloader = engine.downloader
        key = request.meta.get(downloader.DOWNLOAD_SLOT)
        slot = downloader.slots.get(key)
        if slot is not None:
            self._hold_slot(key, slot)
        if self.dropping is not None and not self._drop_pending:
            self._drop_pending = True
            self._bridge.call_later(0, self._drop_late_arrivals)

    def _drop_late_arrivals(self) -> None:
        self._drop_pending = False
        if self.dropping is not None:
            self._fail_queued()

    def _fail_queued(self) -> int:
        engine = self._engine
        if engine is None:
            return 0
        from scrapy.exceptions import IgnoreRequest
        from twisted.python.failure import Failure

        taken = []
        for slot in list(engine.downloader.slots.values()):
            while slot.queue:
                taken.append(slot.queue.popleft())
        # only once every queue is empty: an errback runs engine code at once (on 2.13 it can run
        # the whole close), which must not find half-emptied queues
        why = self.dropping or "the spider is closing"
        for _request, deferred in taken:
            if not deferred.called:
                deferred.errback(Failure(IgnoreRequest(f"vastcap-guard: not sent, {why}")))  # type: ignore[no-untyped-call]
        return len(taken)

    # -- a close started elsewhere -------------------------------------------------------------
    def _watch(self) -> None:
        self._cancel_watch = None
        if not self.held or self.dropping is not None:
            return
        if self.engine_closing():
            n = self.drop("the spider is closing")
            logger.debug("vastcap-guard: the spider is closing; %d held request(s) not sent.", n)
            if self._on_closing is not None:
                self._on_closing()
            return
        self._cancel_watch = self._bridge.call_later(self.WATCH_EVERY, self._watch)

    def _stop_watch(self) -> None:
        cancel, self._cancel_watch = self._cancel_watch, None
        if cancel is not None:
            cancel()
