"""The ``BalanceGuard`` Scrapy extension: pre-flight check, periodic checks, close on a stop verdict.

All decisions and messages come from :class:`vastcap_guard.run.GuardedRun`; this module
translates its verdicts into Scrapy: stats, signals and close reasons.
"""

from __future__ import annotations

import concurrent.futures
import logging
import weakref
from collections.abc import Coroutine, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NoReturn

from scrapy import signals as scrapy_signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, DropItem, IgnoreRequest, NotConfigured
from scrapy.http import Request

from .. import signals
from ..config import DEFAULT_PAUSE_TIMEOUT, GuardConfig, parse_cost
from ..errors import ConfigError, GuardError, LowBalanceError
from ..guard import Action, Guard, Reading, Verdict, format_usd
from ..run import GuardedRun
from ..wording import Wording
from ._compat import (
    CLOSESPIDER_FROM_SPIDER_OPENED,
    DownloaderGate,
    LoopBridge,
    close_download_handlers,
    close_spider,
    engine_of,
    hold_browser_launch,
)

__all__ = ["SETTING_NAMES", "BalanceGuard", "GuardDropItem", "config_from_settings", "get_guard", "parse_cost"]

logger = logging.getLogger("vastcap_guard.scrapy")

#: GuardConfig field -> the Scrapy setting that sets it (so errors name what the user wrote)
SETTING_NAMES: Mapping[str, str] = MappingProxyType({
    "api_key": "VASTCAP_API_KEY",
    "api_url": "VASTCAP_API_URL",
    "interval": "VASTCAP_CHECK_INTERVAL",
    "min_balance": "VASTCAP_MIN_BALANCE",
    "warn_balance": "VASTCAP_WARN_BALANCE",
    "max_spend": "VASTCAP_MAX_SPEND",
    "max_failures": "VASTCAP_MAX_FAILURES",
    "timeout": "VASTCAP_TIMEOUT",
    "require_preflight": "VASTCAP_REQUIRE_PREFLIGHT",
    "warn_minutes": "VASTCAP_WARN_MINUTES",
    "shared_state": "VASTCAP_SHARED_STATE",
    "on_low_balance": "VASTCAP_ON_LOW_BALANCE",
    "pause_timeout": "VASTCAP_PAUSE_TIMEOUT",
})

#: Request.meta key holding the spend CostGuardMiddleware reserved for a request not sent yet
RESERVED_META_KEY = "_vastcap_reserved"

WORDING = Wording(job="crawl", names=SETTING_NAMES, style="setting")

#: crawler -> its BalanceGuard, held weakly both ways (a finished crawl leaves nothing behind)
_guards: weakref.WeakKeyDictionary[Crawler, weakref.ReferenceType[BalanceGuard]] = weakref.WeakKeyDictionary()


def _enabled(settings: Any) -> bool:
    raw = settings.get("VASTCAP_ENABLED", True)
    try:
        return bool(settings.getbool("VASTCAP_ENABLED", True))
    except ValueError:
        raise ConfigError(
            f"VASTCAP_ENABLED must be true or false, got {raw!r}.", setting="VASTCAP_ENABLED"
        ) from None


def config_from_settings(settings: Any, environ: Mapping[str, str] | None = None) -> GuardConfig:
    """Build and validate the guard's config from Scrapy settings (raises :class:`ConfigError`).

    The key falls back to the ``VASTCAP_API_KEY`` environment variable.
    """
    return GuardConfig.build(
        settings.get("VASTCAP_API_KEY"),
        api_url=settings.get("VASTCAP_API_URL"),
        interval=settings.get("VASTCAP_CHECK_INTERVAL", 60),
        min_balance=settings.get("VASTCAP_MIN_BALANCE", "0.001"),
        warn_balance=settings.get("VASTCAP_WARN_BALANCE"),
        max_spend=settings.get("VASTCAP_MAX_SPEND"),
        max_failures=settings.get("VASTCAP_MAX_FAILURES", 3),
        timeout=settings.get("VASTCAP_TIMEOUT", 10),
        require_preflight=settings.get("VASTCAP_REQUIRE_PREFLIGHT", True),
        warn_minutes=settings.get("VASTCAP_WARN_MINUTES"),
        shared_state=settings.get("VASTCAP_SHARED_STATE"),
        on_low_balance=settings.get("VASTCAP_ON_LOW_BALANCE", "close"),
        pause_timeout=settings.get("VASTCAP_PAUSE_TIMEOUT", DEFAULT_PAUSE_TIMEOUT),
        names=SETTING_NAMES,
        environ=environ,
    )


def get_guard(crawler: Crawler) -> BalanceGuard | None:
    """The :class:`BalanceGuard` running for ``crawler``.

    ``None`` when the extension is not enabled for this crawler (neither the add-on nor
    ``EXTENSIONS`` enables it, or ``VASTCAP_ENABLED = False``): callers then spend unguarded, as
    the user asked.
    """
    ref = _guards.get(crawler)
    return ref() if ref is not None else None


class GuardDropItem(DropItem):
    """Raised from an item pipeline instead of a :class:`~vastcap_guard.GuardError`: Scrapy drops
    the item with one ``Dropped:`` line (no traceback, no ``ERROR Error processing``), counts it in
    ``item_dropped_count`` / ``item_dropped_reasons_count/GuardDropItem``, and the crawl goes on
    to the close the guard has already started.

    ``error`` is the :class:`~vastcap_guard.GuardError` (``reason`` its close reason).
    :meth:`BalanceGuard.ensure_funds_for_item` raises it with ``log_level`` WARNING for the first
    item of a crawl and DEBUG after that; raise it yourself with ``GuardDropItem(error)``.
    """

    def __init__(self, error: GuardError, *, log_level: str = "WARNING") -> None:
        # DropItem sets log_level on the instance (a class attribute would be overwritten)
        super().__init__(WORDING.spend_refused(error, "item"), log_level=log_level)
        self.error = error
        self.reason = error.reason


class BalanceGuard:
    """Scrapy extension: ``ADDONS = {"vastcap_guard.scrapy.Addon": 500}`` enables it, or
    ``EXTENSIONS = {"vastcap_guard.scrapy.BalanceGuard": 500}``.

    Checks the VastCap balance before the first request is scheduled and every
    ``VASTCAP_CHECK_INTERVAL`` seconds while the crawl runs, and closes the spider with the core's
    reason (``vastcap_low_balance``...) when the guard says stop. Also the object
    :func:`get_guard` returns, for pipelines and callbacks that spend (:meth:`ensure_funds`).
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.config_error: ConfigError | None = None
        try:
            if not _enabled(settings):
                logger.info("vastcap-guard is off (VASTCAP_ENABLED = False): the crawl is not guarded.")
                raise NotConfigured("VASTCAP_ENABLED is False")
            config = config_from_settings(settings)
        except ConfigError as exc:
            # reported once, at spider_opened, as a clean close rather than a traceback here
            self.config_error = exc
            config = GuardConfig(api_key=None)
        self.config = config
        self.run = GuardedRun(config, WORDING, logger=logger, on_stop=self._on_stop,
                              on_verdict=self._on_verdict, deliver=self._deliver)
        if self.config_error is not None:
            self.run.guard.trip(self.config_error)
        self._bridge: LoopBridge | None = None
        self._gate: DownloaderGate | None = None
        self._closed = False
        self._close_requested = False
        self._close_deferred: Any = None
        self._bad_cost_reported = False
        #: pause mode: while paused, completes at the resume (or the stop, or the close)
        self._resumed: concurrent.futures.Future[None] | None = None
        self._items_dropped = 0
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.request_scheduled, signal=scrapy_signals.request_scheduled)
        crawler.signals.connect(self.spider_idle, signal=scrapy_signals.spider_idle)
        crawler.signals.connect(self._leave_poller, signal=scrapy_signals.engine_stopped)
        _guards[crawler] = weakref.ref(self)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BalanceGuard:
        return cls(crawler)

    def __repr__(self) -> str:
        return f"BalanceGuard(key={self.config.masked_key!r}, tripped={self.reason!r})"

    # -- state ---------------------------------------------------------------------------------
    @property
    def guard(self) -> Guard:
        """The core :class:`~vastcap_guard.Guard` (decisions and counters) of this crawl."""
        return self.run.guard

    @property
    def tripped(self) -> GuardError | None:
        """The error that stopped (or will stop) the crawl, if any."""
        return self.run.tripped

    @property
    def reason(self) -> str | None:
        return self.run.reason

    @property
    def balance(self) -> Decimal | None:
        """The last balance read (USD)."""
        return self.run.balance

    # -- Scrapy signal handlers ----------------------------------------------------------------
    async def spider_opened(self, spider: Any = None) -> None:
        """Pre-flight: no request is scheduled before this returns."""
        self._bridge = LoopBridge()
        future = self.run.begin()
        reading: Reading | None = None
        if future is not None:
            reading = await self._bridge.wait(future)
        self.run.preflight(reading)
        error = self.run.tripped
        if error is None:
            self._warn_timers_that_count_pauses()
            return
        if CLOSESPIDER_FROM_SPIDER_OPENED:
            raise CloseSpider(error.reason)
        # Scrapy < 2.18 ignores CloseSpider here: request_scheduled drops every request and the
        # spider is closed with the reason as soon as the engine runs (or goes idle). The engine
        # still sends engine_started: keep scrapy-playwright from starting a browser for nothing.
        hold_browser_launch(self.crawler)
        self._close_when_running(error.reason, tries=400)

    async def spider_closed(self, spider: Any = None, reason: str | None = None) -> None:
        self._end_pause_wait()
        if self._gate is not None:
            self._gate.close()
        closing = self.run.closing_reading()
        if closing is not None and self._bridge is not None:
            # spend reserved by paid requests that no reading showed yet: read once more, so
            # vastcap/spent is what the account was charged
            self.run.settle(await self._bridge.wait(closing))
        self._closed = True
        self._leave_poller()
        if self.run.tripped is not None:
            # refused before the engine ran: Scrapy never closes the download handlers then
            await close_download_handlers(self.crawler)
        if self.run.started and self.guard.checks:
            self._update_stats()
            logger.info(self.run.summary())

    def _leave_poller(self) -> None:
        """Unsubscribe (the last crawler of an account stops the poller thread)."""
        self.run.close()

    def request_scheduled(self, request: Request | None = None, spider: Any = None) -> None:
        """Once the guard has tripped, no new request is scheduled."""
        tripped = self.run.tripped
        if tripped is not None and self.run.started:
            self._request_close(tripped.reason)
            raise IgnoreRequest(f"vastcap-guard stopped the crawl ({tripped.reason})")

    def spider_idle(self, spider: Any = None) -> None:
        tripped = self.run.tripped
        if tripped is not None and self.run.started:
            raise CloseSpider(tripped.reason)

    # -- from the run --------------------------------------------------------------------------
    def _deliver(self, func: Any, *args: Any) -> None:
        """Poller thread: readings are decided on Scrapy's loop thread."""
        bridge = self._bridge
        if bridge is not None and not self._closed:
            bridge.call_soon_threadsafe(func, *args)

    def _on_verdict(self, verdict: Verdict) -> None:
        self._update_stats()
        if verdict.reading is not None:  # (a spend the balance cannot pay pauses without a reading)
            self._send(signals.balance_checked, reading=verdict.reading)
        reading, cfg = verdict.reading, self.config
        if verdict.action is Action.STOP:
            return
        if verdict.action is Action.PAUSE:
            self._pause(verdict)
        elif verdict.action is Action.RESUME:
            self._resume(verdict)
        if verdict.forecast_low and verdict.forecast is not None:
            self._send(signals.balance_forecast, forecast=verdict.forecast)
        if verdict.action is Action.WARN and reading is not None and reading.balance is not None:
            self._send(signals.balance_low, balance=reading.balance, threshold=cfg.warn_balance)

    def _on_stop(self, error: GuardError, at_start: bool) -> None:
        if not at_start:
            # at the decision, not a loop turn later: no queued request leaves the downloader from
            # now on (they are dropped when the close starts)
            gate = self._downloader_gate()
            if gate is not None:
                gate.hold()
        self._end_pause_wait()
        self._send(signals.guard_tripped, error=error, reason=error.reason)
        if not at_start:
            self._request_close(error.reason)

    # -- pausing (VASTCAP_ON_LOW_BALANCE = "pause") ----------------------------------------------
    def _downloader_gate(self) -> DownloaderGate | None:
        if self._gate is None and self._bridge is not None and engine_of(self.crawler) is not None:
            self._gate = DownloaderGate(self.crawler, self._bridge, on_closing=self._end_pause_wait)
        return self._gate

    @property
    def paused(self) -> bool:
        """The crawl is paused, waiting for a top-up (``VASTCAP_ON_LOW_BALANCE = "pause"``)."""
        return self.run.paused and self.run.tripped is None

    def _pause(self, verdict: Verdict) -> None:
        gate = self._downloader_gate()
        if gate is not None:
            gate.hold()  # the engine takes nothing more; queued requests wait in their slots
        if self._resumed is None:
            self._resumed = concurrent.futures.Future()
        if self._bridge is not None and not self._closed:  # VASTCAP_PAUSE_TIMEOUT, readings or not
            self.run.arm_pause_timer(self._bridge.call_later)
        self._send(signals.crawl_paused, error=verdict.error, at_start=not self.run.started)

    def _resume(self, verdict: Verdict) -> None:
        if self._gate is not None:
            self._gate.release()  # and wake the engine now, not at its 5 s heartbeat
        self._end_pause_wait()
        balance = verdict.reading.balance if verdict.reading is not None else None
        self._send(signals.crawl_resumed, balance=balance, paused_seconds=self.guard.last_pause_seconds)

    def _end_pause_wait(self) -> None:
        """The pause is over (resumed, stopped, or the spider is closing): wake whatever waits."""
        self.run.cancel_pause_timer()
        waiting, self._resumed = self._resumed, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def _wait_for_resume(self) -> bool:
        """Wait until the pause ends; True when the crawl goes on (resumed), False when it is
        stopping or closing."""
        waiting = self._resumed
        if waiting is not None and self._bridge is not None:
            await self._bridge.wait(waiting)
        return (self.run.tripped is None and not self._closed
                and not (self._gate is not None and self._gate.dropping is not None))

    def _warn_timers_that_count_pauses(self) -> None:
        if not self.guard.pausing:
            return
        seconds = self.crawler.settings.getfloat("CLOSESPIDER_TIMEOUT_NO_ITEM", 0)
        if seconds > 0:
            logger.warning(WORDING.timer_counts_pauses("CLOSESPIDER_TIMEOUT_NO_ITEM", seconds, self.config))

    # -- closing -------------------------------------------------------------------------------
    def _request_close(self, reason: str) -> None:
        if self._close_requested or self._closed or self._bridge is None:
            return
        self._close_requested = True
        # never close from inside the engine's own call (a signal handler, a middleware)
        self._bridge.call_later(0, self._do_close, reason)

    def _do_close(self, reason: str) -> None:
        if self._closed:
            return
        gate = self._downloader_gate()
        if gate is not None and getattr(engine_of(self.crawler), "spider", None) is not None:
            # requests waiting in the downloader would all still be sent before the close ends
            # (one per DOWNLOAD_DELAY): none of them is sent
            gate.drop(f"vastcap-guard stopped the crawl ({reason})")
        self._close_deferred = close_spider(self.crawler, reason)

    def _close_when_running(self, reason: str, tries: int) -> None:
        """Scrapy < 2.18: close as soon as the engine has started (closing earlier breaks it)."""
        if self._closed or self._close_requested or self._bridge is None:
            return
        engine = engine_of(self.crawler)
        if engine is not None and getattr(engine, "running", False):
            self._request_close(reason)
        elif tries > 0:
            self._bridge.call_later(0.05, self._close_when_running, reason, tries - 1)

    # -- spending ------------------------------------------------------------------------------
    async def ensure_funds(self, cost: object) -> Decimal:
        """Account for ``cost`` USD about to be spent; return the projected balance.

        Raises the matching :class:`~vastcap_guard.GuardError` (low balance, spend cap, tripped
        guard) and closes the spider with its reason. Awaits a fresh balance reading if none was
        taken yet (``VASTCAP_REQUIRE_PREFLIGHT = False`` and the API was down at start); if that
        fails too it raises :class:`~vastcap_guard.ApiUnavailableError` without closing the
        spider (API failures follow ``VASTCAP_MAX_FAILURES``).

        ``VASTCAP_ON_LOW_BALANCE = "pause"``: a balance too low for ``cost`` pauses the crawl
        instead, and this waits for the top-up (then accounts for ``cost``) or for the close.
        """
        if self.run.needs_reading() and self._bridge is not None:
            self.run.take(await self._bridge.wait(self.run.request(max_age=None)))
        while True:
            try:
                return self.run.ensure_funds(cost)
            except LowBalanceError as exc:
                if not self.paused or self._resumed is None:
                    raise
                refused = exc
            if not await self._wait_for_resume() and self.run.tripped is None:
                # closing while paused (CLOSESPIDER_TIMEOUT, Ctrl-C): it cannot pay; not a stop
                raise refused

    async def ensure_funds_for_item(self, cost: object) -> Decimal:
        """:meth:`ensure_funds` for item pipelines: raises :class:`GuardDropItem` (a ``DropItem``)
        instead of the :class:`~vastcap_guard.GuardError`, so Scrapy drops the item with one line
        and no traceback (WARNING for the first item of the crawl, DEBUG after)::

            async def process_item(self, item, spider=None):
                await get_guard(self.crawler).ensure_funds_for_item(0.002)
                ...
        """
        try:
            return await self.ensure_funds(cost)
        except GuardError as exc:
            raise self.drop_item(exc) from None

    def drop_item(self, error: GuardError) -> GuardDropItem:
        """The :class:`GuardDropItem` to raise for ``error``: WARNING the first time, DEBUG after."""
        self._items_dropped += 1
        return GuardDropItem(error, log_level="WARNING" if self._items_dropped == 1 else "DEBUG")

    def check_request(self, request: Request, cost: object) -> Coroutine[Any, Any, None] | None:
        """Used by :class:`CostGuardMiddleware`: reserve ``cost`` for a request about to be sent.

        Raises ``IgnoreRequest`` for a request the account cannot pay for, and closes the spider
        once the guard has tripped. Pause mode: while the crawl is paused, or when this spend
        pauses it, returns a coroutine (the middleware's answer) that waits for the top-up and
        checks again, so a request a top-up pays for is not lost.
        """
        try:
            amount = parse_cost(cost, 'meta["vastcap_cost"]')
        except ConfigError as exc:
            if not self._bad_cost_reported:
                self._bad_cost_reported = True
                logger.error("vastcap-guard: dropped %s: %s", request, exc.message)
            self._count_blocked()
            raise IgnoreRequest(f"vastcap-guard: {exc.message}") from None
        # a copy (retry, redirect) of a request whose earlier attempt held a reservation: that
        # attempt ended without the answer reaching this middleware, so it did not spend
        self.release_request(request)
        if self.paused and self._resumed is not None:
            return self._check_after_resume(request, amount)
        try:
            self.run.reserve(amount)
        except LowBalanceError as exc:
            if self.paused and self._resumed is not None:  # pause mode: this spend paused the crawl
                return self._check_after_resume(request, amount)
            self._refuse(request, amount, exc)
        except GuardError as exc:
            self._refuse(request, amount, exc)
        request.meta[RESERVED_META_KEY] = str(amount)
        return None

    async def _check_after_resume(self, request: Request, amount: Decimal) -> None:
        while True:
            if not await self._wait_for_resume():
                self._count_blocked()
                why = self.run.reason or "the spider is closing"
                raise IgnoreRequest(f"vastcap-guard: not sent, {why}")
            waiting = self.check_request(request, amount)
            if waiting is None:
                return
            waiting.close()  # paused again: wait for the next resume here

    def _refuse(self, request: Request, amount: Decimal, exc: GuardError) -> NoReturn:
        self._count_blocked()
        if self.guard.tripped is not None:
            self.run.stop(self.guard.tripped)
        logger.debug("vastcap-guard: dropped %s (cost %s): %s", request, format_usd(amount), exc.reason)
        raise IgnoreRequest(f"vastcap-guard: {exc.reason}") from None

    def release_request(self, request: Request) -> None:
        """The reservation ``request`` holds will not be spent (it failed or was dropped before it
        was sent): forget it. Used by :class:`CostGuardMiddleware`."""
        reserved = request.meta.pop(RESERVED_META_KEY, None)
        if reserved is not None:
            self.run.release(reserved)

    @staticmethod
    def request_sent(request: Request) -> None:
        """``request`` reached the API: its reservation stays until a reading shows the spend."""
        request.meta.pop(RESERVED_META_KEY, None)

    def _count_blocked(self) -> None:
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value("vastcap/requests_blocked")

    # -- helpers -------------------------------------------------------------------------------
    def _update_stats(self) -> None:
        stats = self.crawler.stats
        if stats is None:
            return
        snap = self.run.snapshot()
        for key in ("balance", "balance_start", "spent"):
            value = snap[key]
            if isinstance(value, Decimal):
                stats.set_value(f"vastcap/{key}", float(value))
        stats.set_value("vastcap/checks", snap["checks"])
        stats.set_value("vastcap/check_failures", snap["check_failures"])
        if self.guard.pausing:
            stats.set_value("vastcap/pauses", snap["pauses"])
            stats.set_value("vastcap/paused_seconds", snap["paused_seconds"])
        gone = []
        for key in ("spend_per_minute", "minutes_left"):
            value = snap[key]
            if isinstance(value, Decimal):
                stats.set_value(f"vastcap/{key}", float(value))
            elif stats.get_value(f"vastcap/{key}") is not None:
                gone.append(f"vastcap/{key}")
        if gone:
            # the forecast is unknown again (a top-up restarts it): a stale number would mislead.
            # Stats collectors have no "delete"; set_stats() with the rest is the public way.
            stats.set_stats({k: v for k, v in stats.get_stats().items() if k not in gone})

    def _send(self, signal: object, **kwargs: Any) -> None:
        self.crawler.signals.send_catch_log(
            signal=signal, guard=self.guard, spider=self.crawler.spider, **kwargs
        )
