"""The ``BalanceGuard`` Scrapy extension: pre-flight check, periodic checks, close on a stop verdict.

All decisions come from :class:`vastcap_guard.Guard`; this module translates its verdicts into
Scrapy: stats, signals, log lines and close reasons.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from scrapy import signals as scrapy_signals
from scrapy.exceptions import CloseSpider, IgnoreRequest, NotConfigured

from .. import signals
from ..config import GuardConfig
from ..errors import ApiError, ApiUnavailableError, ConfigError, GuardError
from ..forecast import Forecast
from ..guard import Action, Guard, Reading, Verdict, format_usd
from ..poller import Subscription, subscribe
from ._compat import CLOSESPIDER_FROM_SPIDER_OPENED, LoopBridge, close_spider, hold_browser_launch

__all__ = ["SETTING_NAMES", "BalanceGuard", "config_from_settings", "get_guard", "parse_cost"]

logger = logging.getLogger("vastcap_guard.scrapy")

#: GuardConfig field -> the Scrapy setting that sets it (so errors name what the user wrote)
SETTING_NAMES: dict[str, str] = {
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
}

#: a pre-flight check may use a reading of the same account this recent (another crawler's)
PREFLIGHT_MAX_AGE = 2.0

#: spend rates are logged to a hundredth of a cent per minute, not to 28 digits
_RATE_QUANTUM = Decimal("0.0001")

_guards: weakref.WeakKeyDictionary[Any, BalanceGuard] = weakref.WeakKeyDictionary()


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
        names=SETTING_NAMES,
        environ=environ,
    )


def parse_cost(cost: object, what: str = "cost") -> Decimal:
    """A spend estimate in USD: a finite number >= 0 (not a bool). Raises :class:`ConfigError`."""
    if isinstance(cost, bool) or cost is None:
        raise ConfigError(f"{what} must be an amount in USD, got {cost!r}.", setting=what)
    try:
        amount = cost if isinstance(cost, Decimal) else Decimal(str(cost).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{what} must be an amount in USD, got {cost!r}.", setting=what) from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{what} must be a finite amount >= 0 in USD, got {cost!r}.", setting=what)
    return amount


def get_guard(crawler: Any) -> BalanceGuard | None:
    """The :class:`BalanceGuard` running for ``crawler``.

    ``None`` when the extension is not enabled for this crawler (neither the add-on nor
    ``EXTENSIONS`` enables it, or ``VASTCAP_ENABLED = False``): callers then spend unguarded, as
    the user asked.
    """
    return _guards.get(crawler)


def _hint(error: GuardError) -> str:
    if isinstance(error, ApiUnavailableError):
        return (
            " To let crawls run through API outages, raise VASTCAP_MAX_FAILURES (0 = never stop on "
            "failed checks) or set VASTCAP_REQUIRE_PREFLIGHT = False."
        )
    if isinstance(error, ApiError):
        return " Check VASTCAP_API_URL and VASTCAP_API_KEY."
    if isinstance(error, ConfigError):
        return " Fix the setting and run the crawl again."
    return ""


class BalanceGuard:
    """Scrapy extension: ``ADDONS = {"vastcap_guard.scrapy.Addon": 500}`` enables it, or
    ``EXTENSIONS = {"vastcap_guard.scrapy.BalanceGuard": 500}``.

    Checks the VastCap balance before the first request is scheduled and every
    ``VASTCAP_CHECK_INTERVAL`` seconds while the crawl runs, and closes the spider with the core's
    reason (``vastcap_low_balance``...) when the guard says stop. Also the object
    :func:`get_guard` returns, for pipelines and callbacks that spend
    (:meth:`ensure_funds`).
    """

    def __init__(self, crawler: Any) -> None:
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
        self.guard = Guard(config)
        if self.config_error is not None:
            self.guard.trip(self.config_error)
        self._bridge: LoopBridge | None = None
        self._sub: Subscription | None = None
        self._started = False  # the pre-flight verdict was taken
        self._closed = False
        self._stop_reported = False
        self._close_requested = False
        self._close_deferred: Any = None
        self._bad_cost_reported = False
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.request_scheduled, signal=scrapy_signals.request_scheduled)
        crawler.signals.connect(self.spider_idle, signal=scrapy_signals.spider_idle)
        crawler.signals.connect(self._leave_poller, signal=scrapy_signals.engine_stopped)
        _guards[crawler] = self

    @classmethod
    def from_crawler(cls, crawler: Any) -> BalanceGuard:
        return cls(crawler)

    def __repr__(self) -> str:
        return f"BalanceGuard(key={self.config.masked_key!r}, tripped={self.reason!r})"

    # -- state ---------------------------------------------------------------------------------
    @property
    def tripped(self) -> GuardError | None:
        """The error that stopped (or will stop) the crawl, if any."""
        return self.guard.tripped

    @property
    def reason(self) -> str | None:
        return self.guard.tripped.reason if self.guard.tripped else None

    @property
    def balance(self) -> Decimal | None:
        """The last balance read (USD)."""
        return self.guard.balance

    # -- Scrapy signal handlers ----------------------------------------------------------------
    async def spider_opened(self, spider: Any = None) -> None:
        """Pre-flight: no request is scheduled before this returns."""
        self._bridge = LoopBridge()
        error = self.guard.tripped or self.guard.preflight_error()
        if error is None:
            self._sub = subscribe(self.config, self._from_poller, guard=self.guard)
            reading = await self._read(max_age=min(self.config.interval, PREFLIGHT_MAX_AGE))
            verdict = self._apply(reading, preflight=True)
            if verdict is not None and verdict.stop:
                error = verdict.error
        self._started = True
        if error is None:
            return
        self._stop(error, at_start=True)
        # the verdict is final: no more checks while Scrapy winds the refused crawl down
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()
        if CLOSESPIDER_FROM_SPIDER_OPENED:
            raise CloseSpider(error.reason)
        # Scrapy < 2.18 ignores CloseSpider here: request_scheduled drops every request and the
        # spider is closed with the reason as soon as the engine runs (or goes idle). The engine
        # still sends engine_started: keep scrapy-playwright from starting a browser for nothing.
        hold_browser_launch(self.crawler)
        self._close_when_running(error.reason, tries=400)

    def spider_closed(self, spider: Any = None, reason: str | None = None) -> None:
        self._closed = True
        self._leave_poller()
        if self._started and self.guard.checks:
            self._update_stats()
            g = self.guard
            logger.info(
                "vastcap-guard: %d balance check(s), %d failed; balance %s, spent %s during the crawl.",
                g.checks,
                g.check_failures,
                format_usd(g.balance) if g.balance is not None else "unknown",
                format_usd(g.spent),
            )

    def _leave_poller(self) -> None:
        """Unsubscribe (the last crawler of an account stops the poller thread)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()

    def request_scheduled(self, request: Any = None, spider: Any = None) -> None:
        """Once the guard has tripped, no new request is scheduled."""
        tripped = self.guard.tripped
        if tripped is not None and self._started:
            self._request_close(tripped.reason)
            raise IgnoreRequest(f"vastcap-guard stopped the crawl ({tripped.reason})")

    def spider_idle(self, spider: Any = None) -> None:
        tripped = self.guard.tripped
        if tripped is not None and self._started:
            raise CloseSpider(tripped.reason)

    # -- readings ------------------------------------------------------------------------------
    def _from_poller(self, reading: Reading) -> None:
        """Called in the poller thread: hand the reading to Scrapy's loop thread."""
        bridge = self._bridge
        if bridge is not None and not self._closed:
            bridge.call_soon_threadsafe(self._on_reading, reading)

    def _on_reading(self, reading: Reading) -> None:
        if self._closed or not self._started or self.guard.tripped is not None:
            # before pre-flight finishes, the pre-flight reading decides; after a stop, nothing does
            return
        self._apply(reading)

    async def _read(self, max_age: float | None) -> Reading:
        sub, bridge = self._sub, self._bridge
        if sub is None or bridge is None:
            return Reading(None, ApiUnavailableError("The guard is not running."))
        limit = self.config.timeout * 4 + 5
        try:
            return await bridge.wait(sub.check(max_age=max_age), limit)
        except TimeoutError:
            return Reading(None, ApiUnavailableError(f"getBalance gave no answer within {limit:g}s."))

    def _apply(self, reading: Reading, *, preflight: bool = False) -> Verdict | None:
        verdict = self.guard.observe(reading)
        if verdict is None:
            return None
        self._update_stats()
        self._send(signals.balance_checked, reading=reading)
        cfg = self.config
        if verdict.action is Action.STOP:
            assert verdict.error is not None
            self._stop(verdict.error, at_start=preflight)
            return verdict
        if reading.ok and reading.balance is not None:
            if preflight:
                logger.info(
                    "vastcap-guard: VastCap balance %s (key %s, stop below %s); checking every %gs.",
                    format_usd(reading.balance), cfg.masked_key, format_usd(cfg.min_balance), cfg.interval,
                )
            else:
                logger.debug(
                    "vastcap-guard: VastCap balance %s (spent %s during the crawl).",
                    format_usd(reading.balance), format_usd(self.guard.spent),
                )
        if verdict.forecast_low and verdict.forecast is not None:
            self._forecast_warning(verdict.forecast, reading)
        if verdict.action is Action.WARN and reading.balance is not None and cfg.warn_balance is not None:
            logger.warning(
                "vastcap-guard: the VastCap balance %s is below VASTCAP_WARN_BALANCE %s (key %s). "
                "Top up the account soon: the crawl stops below %s.",
                format_usd(reading.balance), format_usd(cfg.warn_balance), cfg.masked_key,
                format_usd(cfg.min_balance),
            )
            self._send(signals.balance_low, balance=reading.balance, threshold=cfg.warn_balance)
        elif verdict.action is Action.FAILED:
            err = verdict.error or ApiUnavailableError("getBalance gave no balance.")
            if cfg.max_failures:
                policy = (
                    f"{self.guard.consecutive_failures} in a row; the crawl stops after {cfg.max_failures}"
                )
            else:
                policy = "VASTCAP_MAX_FAILURES = 0: failed checks never stop the crawl"
            if preflight:
                policy += "; VASTCAP_REQUIRE_PREFLIGHT = False: the crawl starts without a confirmed balance"
            logger.warning("vastcap-guard: balance check failed (%s): %s", policy, err.message)
        return verdict

    def _forecast_warning(self, forecast: Forecast, reading: Reading) -> None:
        """The projection fell below ``VASTCAP_WARN_MINUTES``: one WARNING line and the signal."""
        cfg = self.config
        if forecast.spend_per_minute is not None and forecast.minutes_left is not None:
            balance = format_usd(reading.balance) if reading.balance is not None else "the balance"
            logger.warning(
                "vastcap-guard: at the current spend of %s/min the VastCap balance %s lasts about "
                "%.1f more minute(s), less than VASTCAP_WARN_MINUTES %g (key %s). Top up the account "
                "soon: the crawl stops below %s.",
                format_usd(forecast.spend_per_minute.quantize(_RATE_QUANTUM)), balance,
                forecast.minutes_left, cfg.warn_minutes, cfg.masked_key, format_usd(cfg.min_balance),
            )
        self._send(signals.balance_forecast, forecast=forecast)

    # -- stopping ------------------------------------------------------------------------------
    def _stop(self, error: GuardError, *, at_start: bool = False) -> GuardError:
        """Trip the guard; report it once (ERROR line, ``guard_tripped``); close unless at start."""
        error = self.guard.trip(error)
        if not self._stop_reported:
            self._stop_reported = True
            when = "did not start the crawl" if at_start or not self._started else "is stopping the crawl"
            key = f" (API key {self.config.masked_key})" if self.config.api_key else ""
            logger.error(
                "vastcap-guard %s [%s]: %s%s%s", when, error.reason, error.message, key, _hint(error)
            )
            self._send(signals.guard_tripped, error=error, reason=error.reason)
        if not at_start:
            self._request_close(error.reason)
        return error

    def _request_close(self, reason: str) -> None:
        if self._close_requested or self._closed or self._bridge is None:
            return
        self._close_requested = True
        # never close from inside the engine's own call (a signal handler, a middleware)
        self._bridge.call_later(0, self._do_close, reason)

    def _do_close(self, reason: str) -> None:
        if not self._closed:
            self._close_deferred = close_spider(self.crawler, reason)

    def _close_when_running(self, reason: str, tries: int) -> None:
        """Scrapy < 2.18: close as soon as the engine has started (closing earlier breaks it)."""
        if self._closed or self._close_requested or self._bridge is None:
            return
        engine = getattr(self.crawler, "engine", None)
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
        """
        try:
            amount = parse_cost(cost)
        except ConfigError as exc:
            raise self._stop(exc) from None
        if self.guard.tripped is not None:
            raise self._stop(self.guard.tripped)
        if self.guard.balance is None and self._started and self._sub is not None:
            # no balance was ever read (the API was down at start): read one now
            self._apply(await self._read(max_age=None))
        try:
            return self.guard.reserve(amount)
        except ApiUnavailableError:
            if self.guard.tripped is not None:
                raise self._stop(self.guard.tripped) from None
            raise  # still no balance: refuse this spend, but API failures follow the failure policy
        except GuardError as exc:
            raise self._stop(exc) from None

    def check_request(self, request: Any, cost: object) -> None:
        """Used by :class:`CostGuardMiddleware`: raise ``IgnoreRequest`` for a request the
        account cannot pay for; close the spider once the guard has tripped."""
        try:
            amount = parse_cost(cost, 'meta["vastcap_cost"]')
        except ConfigError as exc:
            if not self._bad_cost_reported:
                self._bad_cost_reported = True
                logger.error("vastcap-guard: dropped %s: %s", request, exc.message)
            self._count_blocked()
            raise IgnoreRequest(f"vastcap-guard: {exc.message}") from None
        try:
            self.guard.reserve(amount)
        except GuardError as exc:
            self._count_blocked()
            if self.guard.tripped is not None:
                self._stop(self.guard.tripped)
            logger.debug("vastcap-guard: dropped %s (cost %s): %s", request, format_usd(amount), exc.reason)
            raise IgnoreRequest(f"vastcap-guard: {exc.reason}") from None

    def _count_blocked(self) -> None:
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value("vastcap/requests_blocked")

    # -- helpers -------------------------------------------------------------------------------
    def _update_stats(self) -> None:
        stats = self.crawler.stats
        if stats is None:
            return
        g = self.guard
        if g.balance is not None:
            stats.set_value("vastcap/balance", float(g.balance))
        if g.balance_start is not None:
            stats.set_value("vastcap/balance_start", float(g.balance_start))
        stats.set_value("vastcap/spent", float(g.spent))
        stats.set_value("vastcap/checks", g.checks)
        stats.set_value("vastcap/check_failures", g.check_failures)
        forecast = g.forecast
        gone = []
        for key, value in (("vastcap/spend_per_minute", forecast.spend_per_minute),
                           ("vastcap/minutes_left", forecast.minutes_left)):
            if value is not None:
                stats.set_value(key, float(value))
            elif stats.get_value(key) is not None:
                gone.append(key)
        if gone:
            # the forecast is unknown again (a top-up restarts it): a stale number would mislead.
            # Stats collectors have no "delete"; set_stats() with the rest is the public way.
            stats.set_stats({k: v for k, v in stats.get_stats().items() if k not in gone})

    def _send(self, signal: object, **kwargs: Any) -> None:
        self.crawler.signals.send_catch_log(
            signal=signal, guard=self.guard, spider=self.crawler.spider, **kwargs
        )
