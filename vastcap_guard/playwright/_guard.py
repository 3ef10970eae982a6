"""The Playwright guard: a decorator and (sync or async) context manager around a script.

One :class:`PlaywrightGuard` (what :func:`guard` returns) may be entered many times, also at once
from several threads or asyncio tasks; each entry is a :class:`_Scope` with its own
:class:`~vastcap_guard.run.GuardedRun`. The run decides and words everything; the scope connects
it to Playwright: the hooks on session starts (:mod:`._hooks`), and closing the browsers on a stop
(:mod:`._browsers`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar, cast

from ..config import DEFAULT_INTERVAL, DEFAULT_MAX_FAILURES, DEFAULT_TIMEOUT, GuardConfig
from ..errors import GuardError
from ..guard import Guard
from ..run import GuardedRun
from ..scope import RunState, build_config
from ..wording import PYTHON_NAMES, Wording
from . import _hooks
from ._browsers import Browsers

__all__ = ["PlaywrightGuard", "guard"]

logger = logging.getLogger("vastcap_guard.playwright")

Money = Decimal | str | float | int
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

WORDING = Wording(job="Playwright script", names=PYTHON_NAMES, style="argument")

#: how long leaving a scope waits for the (last) poller thread to end
_THREAD_WAIT = 2.0


class _Scope:
    """One entry into a guard (a decorated call or a ``with`` / ``async with`` block): connects
    its :class:`GuardedRun` to Playwright's session starts and browsers."""

    def __init__(self, owner: PlaywrightGuard, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.owner = owner
        self.browsers = Browsers()
        # async API: readings are decided on the script's loop; sync API: in the poller thread,
        # from where closing a sync browser is safe (it is scheduled on Playwright's own loop)
        self.run = GuardedRun(owner.config, WORDING, logger=logger, on_stop=self._on_stop,
                              deliver=loop.call_soon_threadsafe if loop is not None else None,
                              on_fork=self.browsers.forget_all)
        self.active = False
        self._loop = loop
        self._token: contextvars.Token[tuple[_hooks.Scope, ...]] | None = None

    @property
    def guard(self) -> Guard:
        return self.run.guard

    # -- entering and leaving --------------------------------------------------------------------
    def enter_sync(self) -> None:
        self.run.start_blocking()
        self._activate()

    def exit_sync(self, exc: BaseException | None) -> None:
        try:
            self._deactivate()
        finally:
            self.run.close(wait=_THREAD_WAIT)
            error = self.run.tripped
            if error is not None:
                self.browsers.finish_sync(error)
        self._raise_outcome(exc)

    async def enter_async(self) -> None:
        await self.run.start_async()
        self._activate()

    async def exit_async(self, exc: BaseException | None) -> None:
        try:
            self._deactivate()
        finally:
            thread = self.run.close()
            deadline = time.monotonic() + _THREAD_WAIT
            while thread is not None and thread.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # the poller thread ends without blocking the loop
            error = self.run.tripped
            if error is not None:
                await self.browsers.finish_async(error, self._loop)
        self._raise_outcome(exc)

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

    def _raise_outcome(self, exc: BaseException | None) -> None:
        """After a stop, the body ends with the guard's error (chaining what Playwright raised)."""
        error = self.run.tripped
        if error is None:
            return
        if exc is None:
            raise error.with_traceback(None)
        if isinstance(exc, GuardError) or not isinstance(exc, Exception):
            return  # already ours, or KeyboardInterrupt / cancellation: let it through
        raise error.with_traceback(None) from exc

    # -- the hooks (_hooks.Scope) ----------------------------------------------------------------
    def check_start_blocking(self) -> None:
        """A sync-API session start: admitted on the latest reading, or after a fresh one."""
        self.run.admit_blocking()

    async def check_start_async(self) -> None:
        await self.run.admit_async()

    def track_started(self, obj: Any) -> None:
        """A session the hooks saw start: track it; if the guard stopped meanwhile, close it and raise."""
        self.watch(obj)

    def drain_sync(self, loop: Any) -> None:
        """``with sync_playwright()`` is ending inside this scope: let the closes this scope
        scheduled on its loop finish first (see :meth:`Browsers.drain_sync`)."""
        if self.run.tripped is not None:
            self.browsers.drain_sync(loop)

    def watch(self, obj: T) -> T:
        target = self.browsers.track(obj, self._loop)
        error = self.run.tripped
        if error is not None:
            self.browsers.close(target, error)
            raise error.with_traceback(None)
        return obj

    def _on_stop(self, error: GuardError, at_start: bool) -> None:
        if not at_start:
            self.browsers.close_all(error)


class PlaywrightGuard(RunState):
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
            f"PlaywrightGuard(api_key={c.masked_key!r}, api_url={c.safe_api_url!r}, interval={c.interval!r}, "
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
        scope = _Scope(self, asyncio.get_running_loop())
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

    def _latest_run(self) -> GuardedRun | None:
        try:
            return self._scope(last=True).run
        except RuntimeError:
            return None


def guard(
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
) -> PlaywrightGuard:
    """Guard a Playwright script (sync or async API; Playwright, patchright or
    rebrowser-playwright) against an account that cannot pay.

    ``api_key`` falls back to ``VASTCAP_API_KEY`` and ``api_url`` to ``VASTCAP_API_URL`` (then
    VastCap's own URL). ``warn_minutes`` logs one warning when the spend rate says the money
    lasts fewer minutes than that. ``require_preflight=False`` lets the body start when the first
    check cannot reach the API. ``shared_state="redis://host:6379/0"`` joins a fleet (one poll per
    interval for every process on the key, fleet-wide stops and spend). Bad values raise
    :class:`~vastcap_guard.ConfigError` naming the parameter.
    """
    config = build_config(
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
    )
    return PlaywrightGuard(config)
