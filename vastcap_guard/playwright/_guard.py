"""The Playwright guard: pre-flight, hooked session starts, background checks, stop and cleanup.

One :class:`PlaywrightGuard` (what :func:`guard` returns) may be entered many times, also at once
from several threads or asyncio tasks; each entry is a :class:`_Scope` with its own
:class:`~vastcap_guard.Guard` state. All decisions come from ``Guard.observe``; this module only
acts on the verdicts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar, cast

import playwright.async_api as async_api
import playwright.sync_api as sync_api

from ..config import GuardConfig
from ..errors import ApiUnavailableError, GuardError
from ..forecast import Forecast
from ..guard import Action, Guard, Reading, Verdict, format_usd
from ..poller import Subscription, subscribe
from . import _hooks
from ._private import PrivateApiChanged, schedule_sync_close

__all__ = ["PlaywrightGuard", "guard"]

logger = logging.getLogger("vastcap_guard.playwright")

Money = Decimal | str | float | int
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_SYNC_TYPES = (sync_api.Browser, sync_api.BrowserContext)
_ASYNC_TYPES = (async_api.Browser, async_api.BrowserContext)
_PAGE_TYPES = (sync_api.Page, async_api.Page)
_BROWSER_TYPES = (sync_api.Browser, async_api.Browser)

#: how long leaving a scope waits for the (last) poller thread to end
_THREAD_WAIT = 2.0
#: how long leaving a stopped async scope waits for its browsers to close
_CLOSE_WAIT = 15.0

_NAMES = {
    f: f
    for f in (
        "api_key", "api_url", "interval", "min_balance", "warn_balance", "max_spend", "max_failures", "timeout",
        "warn_minutes",
    )
}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _aclose(obj: Any, reason: str) -> None:
    try:
        await obj.close(reason=reason)
    except Exception:  # already closed, or its Playwright is gone: either way it is closed
        logger.debug("closing %s failed", type(obj).__name__, exc_info=True)


@dataclass(eq=False)
class _Target:
    """A browser or context the scope closes on a stop."""

    obj: Any
    kind: str  # "sync" or "async"
    #: the loop an async object belongs to
    loop: asyncio.AbstractEventLoop | None
    closing: bool = False


class _Scope:
    """One entry into a guard: a decorated call or a ``with`` / ``async with`` block."""

    def __init__(self, owner: PlaywrightGuard) -> None:
        self.owner = owner
        self.config = owner.config
        self.guard = Guard(owner.config)
        self.active = False
        self._lock = threading.Lock()
        self._targets: list[_Target] = []
        self._stopped = False
        self._pending: list[asyncio.Future[Any] | concurrent.futures.Future[Any]] = []
        self._sub: Subscription | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Reading] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._token: contextvars.Token[tuple[_hooks.Scope, ...]] | None = None
        self._private_warned = False
        # one check waits at most this long: the client gives up after 3 x timeout
        self._check_wait = 3 * self.config.timeout + 5

    # -- entering and leaving --------------------------------------------------------------------
    def enter_sync(self) -> None:
        self._preflight_key()
        self._sub = subscribe(self.config, self._on_reading_sync, interval=self.config.interval, guard=self.guard)
        try:
            self.check_start_blocking()
        except BaseException:
            self._close_sub_sync()
            raise
        self._activate()

    def exit_sync(self, exc: BaseException | None) -> None:
        try:
            self._deactivate()
        finally:
            self._close_sub_sync()
            if self.guard.tripped is not None:
                self._finish_sync()
        self._raise_outcome(exc)

    async def enter_async(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._preflight_key()
        self._sub = subscribe(self.config, self._on_reading_async, interval=self.config.interval, guard=self.guard)
        try:
            await self.check_start_async()
        except BaseException:
            await self._close_sub_async()
            raise
        self._reader = self._loop.create_task(self._read_readings(), name="vastcap-guard-playwright")
        self._activate()

    async def exit_async(self, exc: BaseException | None) -> None:
        reader, self._reader = self._reader, None
        try:
            self._deactivate()
        finally:
            # everything that does not wait first, so a second cancellation cannot leave a task behind
            if reader is not None:
                reader.cancel()
            closing = self._close_sub_async()
            try:
                if reader is not None:
                    await asyncio.wait({reader})
            finally:
                await closing
            if self.guard.tripped is not None:
                await self._finish_async()
        self._raise_outcome(exc)

    def _preflight_key(self) -> None:
        error = self.guard.preflight_error()
        if error is not None:
            self._stop(error)
            raise error

    def _activate(self) -> None:
        _hooks.acquire()
        self.active = True
        self._token = _hooks.push(self)

    def _deactivate(self) -> None:
        if not self.active:
            return
        self.active = False
        token, self._token = self._token, None
        try:
            if token is not None:
                _hooks.reset(token)
        finally:
            _hooks.release()

    def _close_sub_sync(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close(wait=_THREAD_WAIT)

    def _close_sub_async(self) -> Coroutine[Any, Any, None]:
        """Leave the poller now; the returned coroutine waits (without blocking) for its thread to end."""
        sub, self._sub = self._sub, None
        thread = None
        if sub is not None:
            thread = sub.close(wait=0.0)

        async def wait_for_thread() -> None:
            deadline = time.monotonic() + _THREAD_WAIT
            while thread is not None and thread.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

        return wait_for_thread()

    def _raise_outcome(self, exc: BaseException | None) -> None:
        """After a stop, the body ends with the guard's error (chaining what Playwright raised)."""
        error = self.guard.tripped
        if error is None:
            return
        if exc is None:
            raise error.with_traceback(None)
        if isinstance(exc, GuardError) or not isinstance(exc, Exception):
            return  # already ours, or KeyboardInterrupt / cancellation: let it through
        raise error.with_traceback(None) from exc

    # -- checks ----------------------------------------------------------------------------------
    def _no_answer(self) -> Reading:
        return Reading(
            None,
            ApiUnavailableError(f"The VastCap balance check gave no answer within {self._check_wait:.0f} s."),
        )

    def _raise_if_stopped(self) -> None:
        error = self.guard.tripped
        if error is not None:
            raise error.with_traceback(None)

    def check_start_blocking(self) -> None:
        """Pre-flight and sync-API session starts: a reading younger than the interval, or a new one."""
        self._raise_if_stopped()
        sub = self._sub
        if sub is None:
            return
        future = sub.check(max_age=self.config.interval)
        try:
            reading = future.result(timeout=self._check_wait)
        except concurrent.futures.TimeoutError:
            reading = self._no_answer()
        self._apply(self.guard.observe(reading))
        self._raise_if_stopped()

    async def check_start_async(self) -> None:
        """The same for the async API, without blocking the loop."""
        self._raise_if_stopped()
        sub = self._sub
        if sub is None:
            return
        future = asyncio.wrap_future(sub.check(max_age=self.config.interval))
        done, _ = await asyncio.wait({future}, timeout=self._check_wait)
        reading = future.result() if done else self._no_answer()
        self._apply(self.guard.observe(reading))
        self._raise_if_stopped()

    def _on_reading_sync(self, reading: Reading) -> None:
        # poller thread: deciding is pure and thread-safe; closing is scheduled on Playwright's loop
        self._apply(self.guard.observe(reading))

    def _on_reading_async(self, reading: Reading) -> None:
        # poller thread: hand the reading to the task on the script's loop
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return
        try:
            loop.call_soon_threadsafe(queue.put_nowait, reading)
        except RuntimeError:  # the loop is closed: the scope is gone
            pass

    async def _read_readings(self) -> None:
        assert self._queue is not None
        while True:
            reading = await self._queue.get()
            self._apply(self.guard.observe(reading))

    def _apply(self, verdict: Verdict | None) -> None:
        if verdict is None:
            return
        if verdict.action is Action.STOP:
            self._stop(verdict.error)
        elif verdict.action is Action.FAILED:
            limit = self.config.max_failures
            policy = (
                f"{self.guard.consecutive_failures} in a row; {limit} in a row stop it"
                if limit
                else "failed checks never stop it"
            )
            message = verdict.error.message if verdict.error is not None else "no balance"
            logger.warning("vastcap-guard: a balance check failed, the script goes on (%s): %s", policy, message)
        elif verdict.action is Action.WARN and verdict.reading is not None and verdict.reading.balance is not None:
            warn = self.config.warn_balance
            logger.warning(
                "vastcap-guard: the VastCap balance is %s, below the warning level of %s.",
                format_usd(verdict.reading.balance),
                format_usd(warn) if warn is not None else "?",
            )
        if verdict.forecast_low and verdict.action is not Action.STOP and verdict.forecast is not None:
            logger.warning(
                "vastcap-guard: at the current spend the VastCap balance lasts less than %s minutes (%s).",
                f"{self.config.warn_minutes:g}",
                verdict.forecast,
            )

    # -- tracking and stopping -------------------------------------------------------------------
    def track_started(self, obj: Any) -> None:
        """A session the hooks saw start: track it; if the guard stopped meanwhile, close it and raise."""
        self.watch(obj)

    def watch(self, obj: T) -> T:
        target = self._track(obj)
        if self._stopped:
            error = self.guard.tripped
            if error is not None:
                self._close_target(target, error)
            self._raise_if_stopped()
        return obj

    def _track(self, obj: Any) -> _Target:
        what = obj.context if isinstance(obj, _PAGE_TYPES) else obj
        loop: asyncio.AbstractEventLoop | None
        if isinstance(what, _SYNC_TYPES):
            kind, loop = "sync", None
        elif isinstance(what, _ASYNC_TYPES):
            kind, loop = "async", _running_loop() or self._loop
        else:
            raise TypeError(f"watch() takes a Playwright Browser, BrowserContext or Page, not {type(obj).__name__}")
        with self._lock:
            for known in self._targets:
                if known.obj is what:
                    return known
            target = _Target(what, kind, loop)
            self._targets.append(target)
        event = "disconnected" if isinstance(what, _BROWSER_TYPES) else "close"
        listener: Any = what
        try:
            listener.once(event, lambda *_: self._forget(target))
        except Exception:  # pragma: no cover - only keeps the list short
            logger.debug("cannot listen for %s on %s", event, type(what).__name__, exc_info=True)
        return target

    def _forget(self, target: _Target) -> None:
        with self._lock:
            if target in self._targets and not self._stopped:
                self._targets.remove(target)

    @staticmethod
    def _reason(error: GuardError) -> str:
        return f"{error.reason}: {error.message}"

    def _stop(self, error: GuardError | None) -> None:
        """The guard said stop (any thread): close every tracked browser and context."""
        err = self.guard.trip(error) if error is not None else self.guard.tripped
        if err is None:  # pragma: no cover - a STOP verdict always carries its error
            return
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            targets = list(self._targets)
        logger.error("vastcap-guard stopped the Playwright script (%s): %s", err.reason, err.message)
        for target in targets:
            self._close_target(target, err)

    def _close_target(self, target: _Target, error: GuardError) -> None:
        with self._lock:
            if target.closing:
                return
            target.closing = True
        reason = self._reason(error)
        if target.kind == "sync":
            try:
                future = schedule_sync_close(target.obj, reason)
            except PrivateApiChanged as exc:
                if not self._private_warned:
                    self._private_warned = True
                    logger.warning(
                        "vastcap-guard cannot close the browser from the background (%s); it is "
                        "closed when the guarded code ends.", exc,
                    )
                return
            if future is not None:
                with self._lock:
                    self._pending.append(future)
            return
        loop = target.loop
        if loop is None or loop.is_closed():
            return
        coro = _aclose(target.obj, reason)
        if _running_loop() is loop:
            task: asyncio.Future[Any] = loop.create_task(coro)
            with self._lock:
                self._pending.append(task)
            return
        try:
            cfuture = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # its loop closed meanwhile
            coro.close()
            return
        with self._lock:
            self._pending.append(cfuture)

    def _finish_sync(self) -> None:
        """Leaving a stopped sync scope: finish closing in the script's thread, Playwright's owner."""
        error = self.guard.tripped
        assert error is not None
        self._stop(error)
        reason = self._reason(error)
        with self._lock:
            targets = list(self._targets)
        for target in targets:
            if target.kind != "sync":
                continue
            try:
                # runs Playwright's loop, so a close scheduled from the poller thread completes too
                target.obj.close(reason=reason)
            except Exception:
                logger.debug("closing %s failed", type(target.obj).__name__, exc_info=True)

    async def _finish_async(self) -> None:
        error = self.guard.tripped
        assert error is not None
        self._stop(error)
        with self._lock:
            targets = list(self._targets)
        for target in targets:
            self._close_target(target, error)
        with self._lock:
            mine = [f for f in self._pending if isinstance(f, asyncio.Future) and f.get_loop() is self._loop]
            others = [f for f in self._pending if isinstance(f, concurrent.futures.Future)]
        waits: list[asyncio.Future[Any]] = [*mine, *(asyncio.wrap_future(f) for f in others)]
        if waits:
            await asyncio.wait(waits, timeout=_CLOSE_WAIT)


class PlaywrightGuard:
    """What :func:`guard` returns: a decorator and a (sync or async) context manager.

    Each call of a decorated function and each ``with`` block is a separate guarded run with its
    own pre-flight, counters and stop state.
    """

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self._last: _Scope | None = None

    def __repr__(self) -> str:
        c = self.config
        return (
            f"PlaywrightGuard(api_key={c.masked_key!r}, api_url={c.api_url!r}, interval={c.interval!r}, "
            f"min_balance={str(c.min_balance)!r}, max_failures={c.max_failures!r})"
        )

    # -- decorator ---------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError("guard() decorates plain functions and async def functions, not generators.")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await cast(Callable[..., Coroutine[Any, Any, Any]], fn)(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast(F, run)

    # -- context managers --------------------------------------------------------------------------
    def __enter__(self) -> PlaywrightGuard:
        scope = _Scope(self)
        self._last = scope
        scope.enter_sync()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._scope().exit_sync(exc)

    async def __aenter__(self) -> PlaywrightGuard:
        scope = _Scope(self)
        self._last = scope
        await scope.enter_async()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._scope().exit_async(exc)

    # -- inside a run ------------------------------------------------------------------------------
    def _scope(self, *, last: bool = False) -> _Scope:
        for scope in reversed(_hooks.current_scopes()):
            if isinstance(scope, _Scope) and scope.owner is self and scope.active:
                return scope
        if last and self._last is not None:
            return self._last
        raise RuntimeError("This guard is not active here: use it inside its `with` block or decorated function.")

    def watch(self, browser_or_context: T) -> T:
        """Track a Browser, BrowserContext (or a Page's context) created outside the guarded code.

        It is closed with the others when the guard stops. Returns its argument. Raises the
        guard's error (after closing it) if the guard has already stopped.
        """
        return self._scope().watch(browser_or_context)

    def _run_guard(self) -> Guard:
        """The core Guard of the current (or last) run; a fresh one before any run."""
        try:
            return self._scope(last=True).guard
        except RuntimeError:
            return Guard(self.config)

    @property
    def tripped(self) -> GuardError | None:
        """The error the current (or last) run stopped with, if any."""
        return self._run_guard().tripped

    @property
    def balance(self) -> Decimal | None:
        """The last balance read in the current (or last) run."""
        return self._run_guard().balance

    @property
    def forecast(self) -> Forecast:
        """Spend per minute and minutes left in the current (or last) run (``state='unknown'`` until
        enough readings; see :class:`vastcap_guard.forecast.Forecast`)."""
        return self._run_guard().forecast

    def snapshot(self) -> dict[str, object]:
        """Counters of the current (or last) run: balance, balance_start, spent, checks, check_failures, tripped."""
        return self._run_guard().snapshot()


def guard(
    api_key: str | None = None,
    *,
    api_url: str | None = None,
    interval: float = 60,
    min_balance: Money = "0.001",
    warn_balance: Money | None = None,
    max_spend: Money | None = None,
    max_failures: int = 3,
    timeout: float = 10,
    warn_minutes: float | None = None,
    require_preflight: bool = True,
    shared_state: str | None = None,
) -> PlaywrightGuard:
    """Guard a Playwright script (sync or async API) against an account that cannot pay.

    ``api_key`` falls back to ``VASTCAP_API_KEY`` and ``api_url`` to ``VASTCAP_API_URL`` (then
    VastCap's own URL). ``warn_minutes`` logs one warning when the spend rate says the money
    lasts fewer minutes than that. ``require_preflight=False`` lets the body start when the first
    check cannot reach the API. ``shared_state="redis://host:6379/0"`` joins a fleet (one poll per
    interval for every process on the key, fleet-wide stops and spend). Bad values raise
    :class:`~vastcap_guard.ConfigError` naming the parameter.
    """
    if callable(api_key):
        raise TypeError("Use the decorator with parentheses: @guard() or @guard(api_key=...).")
    config = GuardConfig.build(
        api_key,
        api_url=api_url,
        interval=interval,
        min_balance=min_balance,
        warn_balance=warn_balance,
        max_spend=max_spend,
        max_failures=max_failures,
        timeout=timeout,
        warn_minutes=warn_minutes,
        require_preflight=require_preflight,
        shared_state=shared_state,
        names=_NAMES,
    )
    return PlaywrightGuard(config)
