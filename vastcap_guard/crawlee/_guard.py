"""The Crawlee integration: ``async with guard_crawler(crawler, ...)`` around ``crawler.run()``.

The run (:class:`~vastcap_guard.run.GuardedRun`) decides and words everything; this module
connects it to Crawlee:

- **pre-flight** when the block is entered: a refusal raises before the body runs (no request, no
  browser); in pause mode a low balance waits there for a top-up;
- **the gate**, a pre-navigation hook: a request that reaches it after a stop or during a pause is
  not sent but handed back to the request queue without spending a retry (Playwright: its page is
  closed first);
- **a stop** is ``crawler.stop(reason)``: requests in flight finish, ``run()`` returns its
  statistics, the queue keeps the rest, and leaving the block raises the ``GuardError``;
- **a pause** holds Crawlee's task pool (no request is taken from the queue) until a top-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from decimal import Decimal
from types import TracebackType
from typing import Any

from crawlee.crawlers import BasicCrawler, BasicCrawlingContext

from ..config import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_FAILURES,
    DEFAULT_PAUSE_TIMEOUT,
    DEFAULT_TIMEOUT,
    GuardConfig,
)
from ..errors import ConfigError, GuardError, LowBalanceError
from ..guard import Action, Verdict
from ..run import GuardedRun
from ..scope import RunState
from ..wording import PYTHON_NAMES, Wording
from . import _private

__all__ = ["CrawlerGuard", "RequestHeld", "guard_crawler"]

logger = logging.getLogger("vastcap_guard.crawlee")

Money = Decimal | str | float | int

WORDING = Wording(job="crawl", names=PYTHON_NAMES, style="argument")

#: how long leaving the block waits (without blocking the loop) for the last poller thread to end
_THREAD_WAIT = 2.0


class RequestHeld(Exception):
    """Raised by the guard's hooks for a request it does not let out. Crawlee hands the request
    back to its queue (the gate restores the retry Crawlee counts for it). Not a ``RuntimeError``:
    Crawlee's browser pool rewrites those."""


class CrawlerGuard(RunState):
    """What :func:`guard_crawler` returns: an async context manager around a crawler's runs.

    Each ``async with`` is one guarded run with its own pre-flight, counters and stop. The hooks
    are registered on the crawler once, here, and act only while a run is active.
    """

    def __init__(self, crawler: BasicCrawler[Any, Any], config: GuardConfig) -> None:
        if not isinstance(crawler, BasicCrawler):
            raise TypeError(f"guard_crawler() takes a Crawlee crawler, got {type(crawler).__name__}.")
        self.crawler = crawler
        self.config = config
        self._pool = _private.task_pool(crawler)
        if config.on_low_balance == "pause" and self._pool is None:
            raise ConfigError('on_low_balance="pause" needs Crawlee\'s task pool, which this crawler lacks.',
                              setting="on_low_balance")
        self._run: GuardedRun | None = None
        self._active = False
        self._entering = False
        self._wake = asyncio.Event()
        hook = getattr(crawler, "pre_navigation_hook", None)  # BasicCrawler has no navigation
        if hook is not None:
            hook(self._gate)
        browsers = _private.browser_pool(crawler)
        if browsers is not None:
            browsers.pre_launch_hook(self._launch_gate)

    def __repr__(self) -> str:
        c = self.config
        return (f"CrawlerGuard(crawler={type(self.crawler).__name__}, api_key={c.masked_key!r}, "
                f"api_url={c.safe_api_url!r}, interval={c.interval!r}, on_low_balance={c.on_low_balance!r}, "
                f"tripped={self.tripped.reason if self.tripped else None!r})")

    # -- entering and leaving ------------------------------------------------------------------------
    async def __aenter__(self) -> CrawlerGuard:
        if self._active or self._entering:
            raise RuntimeError("This guard is already active: one `async with` at a time.")
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._run = run = GuardedRun(self.config, WORDING, logger=logger, on_stop=self._on_stop,
                                     on_verdict=self._on_verdict, deliver=loop.call_soon_threadsafe)
        self._entering = True
        try:
            await run.start_async()
            while run.paused and run.tripped is None:  # pause mode: the crawl waits before it starts
                self._wake.clear()
                await self._wake.wait()
            run.raise_if_stopped()
        except BaseException:
            await self._leave(run)
            raise
        finally:
            self._entering = False
        self._active = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        run = self._current()
        self._active = False
        await self._leave(run)
        logger.info(run.summary())
        error = run.tripped
        if error is None or (exc is not None and (isinstance(exc, GuardError) or not isinstance(exc, Exception))):
            return  # nothing of ours, already ours, or KeyboardInterrupt / cancellation: let it through
        raise error.with_traceback(None) from exc

    async def _leave(self, run: GuardedRun) -> None:
        run.cancel_pause_timer()
        if self._pool is not None:
            self._pool.resume()  # never leave the crawler's pool held
        closing = run.closing_reading()
        if closing is not None:  # spend reserved by ensure_funds that no reading showed yet
            run.settle(await asyncio.wrap_future(closing))
        thread = run.close()
        deadline = time.monotonic() + _THREAD_WAIT
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the poller thread ends without blocking the loop

    # -- the hooks ---------------------------------------------------------------------------------------
    async def _gate(self, ctx: BasicCrawlingContext) -> None:
        """Pre-navigation: after a stop or during a pause the request goes back to the queue unsent."""
        run = self._run
        if not self._active or run is None or (run.tripped is None and not run.paused):
            return
        page = None
        with contextlib.suppress(Exception):  # the adaptive crawler's static side has no page
            page = getattr(ctx, "page", None)
        if page is not None:
            with contextlib.suppress(Exception):
                await page.close()  # else it stays open, counted against the browser, until the crawl ends
        ctx.request.retry_count -= 1  # Crawlee adds it back when it reclaims the request
        reason = run.tripped.reason if run.tripped is not None else LowBalanceError.reason
        why = WORDING.held(reason, paused=run.tripped is None)
        raise RequestHeld(why)  # Crawlee's retry line quotes this source line

    async def _launch_gate(self, page_id: str, plugin: Any) -> None:
        """PlaywrightCrawler: no browser starts after a stop."""
        run = self._run
        if self._active and run is not None and run.tripped is not None:
            raise RequestHeld(WORDING.held(run.tripped.reason, paused=False))

    # -- from the run (on the crawler's loop) ------------------------------------------------------------
    def _on_verdict(self, verdict: Verdict) -> None:
        if verdict.action is Action.PAUSE:
            if self._pool is not None:
                self._pool.pause()
            loop = asyncio.get_running_loop()
            self._current().arm_pause_timer(lambda delay, fire: loop.call_later(delay, fire).cancel)
        elif verdict.action is Action.RESUME:
            self._current().cancel_pause_timer()
            if self._pool is not None:
                self._pool.resume()
            self._wake.set()

    def _on_stop(self, error: GuardError, at_start: bool) -> None:
        self._current().cancel_pause_timer()
        self._wake.set()
        if not (at_start or self._entering):  # refused before the body: the crawler is not touched
            self.crawler.stop(WORDING.stop_reason(error))
            if self._pool is not None:
                self._pool.resume()  # a stopped crawl ends; a held pool would not let a later run start

    # -- inside the block ----------------------------------------------------------------------------
    def _current(self) -> GuardedRun:
        if self._run is None:
            raise RuntimeError("This guard has not been entered: use it as `async with guard_crawler(...)`.")
        return self._run

    async def ensure_funds(self, cost: Money) -> Decimal:
        """Account for ``cost`` USD about to be spent; return the projected balance.

        Raises (and stops the crawl with) the :class:`~vastcap_guard.GuardError` when the account
        cannot pay: low balance, spend cap, a stop decided before. In pause mode a low balance
        raises :class:`~vastcap_guard.LowBalanceError` without stopping the crawl.
        """
        if not self._active:
            raise RuntimeError("ensure_funds() works inside the guard's `async with` block.")
        return await self._current().ensure_funds_async(cost)

    def _latest_run(self) -> GuardedRun | None:
        return self._run

    @property
    def paused(self) -> bool:
        """Pause mode: the crawl waits for a top-up."""
        return self._run is not None and self._run.paused


def guard_crawler(
    crawler: BasicCrawler[Any, Any],
    api_key: str | None = None,
    *,
    api_url: str | None = None,
    interval: float = DEFAULT_INTERVAL,
    min_balance: Money = "0.001",
    warn_balance: Money | None = None,
    max_spend: Money | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    timeout: float = DEFAULT_TIMEOUT,
    warn_minutes: float | None = None,
    require_preflight: bool = True,
    shared_state: str | None = None,
    on_low_balance: str = "close",
    pause_timeout: float = DEFAULT_PAUSE_TIMEOUT,
) -> CrawlerGuard:
    """Guard a Crawlee crawler's runs against a VastCap account that cannot pay:
    ``async with guard_crawler(crawler) as g: await crawler.run([...])``.

    The parameters are those of :func:`vastcap_guard.playwright.guard`, plus ``on_low_balance="pause"``
    (a low balance pauses the crawl until a top-up, for at most ``pause_timeout`` seconds). Bad
    values raise :class:`~vastcap_guard.ConfigError` naming the parameter.
    """
    config = GuardConfig.build(
        api_key, api_url=api_url, interval=interval, min_balance=min_balance, warn_balance=warn_balance,
        max_spend=max_spend, max_failures=max_failures, timeout=timeout, warn_minutes=warn_minutes,
        require_preflight=require_preflight, shared_state=shared_state, on_low_balance=on_low_balance,
        pause_timeout=pause_timeout, names=PYTHON_NAMES,
    )
    return CrawlerGuard(crawler, config)
