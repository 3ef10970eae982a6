"""Guarded scopes for the Python adapters: the decorator and context manager, one
:class:`~vastcap_guard.run.GuardedRun` per entry, and hooks on a framework's session starts.

An adapter whose users write ``@guard(...)`` or ``with guard(...) as g:`` around blocking code
(Selenium; Playwright's sync API has the same shape) is three small subclasses of what is here:

- :class:`SessionHooks`: wrappers on the framework's session-starting methods, installed while at
  least one scope is active and restored when the last one ends. A context variable says which
  scopes the *calling* code runs in: code outside every scope (another thread, code after the
  scope) goes straight to the original method.
- :class:`SyncScope`: one entry into a guard. It runs the pre-flight (a refusal raises before the
  body runs), admits and watches every session the body starts, and on the way out ends the run,
  lets the adapter clean up, and raises the guard's error chained from what the framework raised.
- :class:`RunState`: ``tripped``, ``balance``, ``forecast``, ``snapshot()`` of a guard's current (or
  last) run, shared by every adapter's guard object.
- :class:`ScopedGuard`: what ``guard()`` returns: decorator, context manager, and the state of the
  current (or last) run: ``tripped``, ``balance``, ``forecast``, ``snapshot()``,
  ``ensure_funds()``, ``watch()``.

The adapter supplies its framework's idiom only: which methods start sessions, how to track what
started, how to stop it (:meth:`SyncScope.stop_sessions`, called once, from the thread that
decided) and what to do when the scope ends (:meth:`SyncScope.leave`). Nothing here imports a
framework.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from decimal import Decimal
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast

from .config import DEFAULT_INTERVAL, DEFAULT_MAX_FAILURES, DEFAULT_TIMEOUT, GuardConfig
from .errors import GuardError
from .forecast import Forecast
from .guard import Guard
from .run import GuardedRun
from .wording import PYTHON_NAMES, Wording

__all__ = ["RunState", "ScopedGuard", "SessionHooks", "SyncScope", "build_config"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
Money = Decimal | str | float | int

#: how long leaving a scope waits for the (last) poller thread to end
THREAD_WAIT = 2.0

_all_hooks: weakref.WeakSet[SessionHooks] = weakref.WeakSet()


class SessionHooks:
    """Wrappers on the methods that start a framework's sessions, while a scope is active.

    ``targets()`` returns the ``(class, method name)`` pairs to wrap; it is called when the first
    scope opens, so the framework is imported only then. A wrapped call made inside active scopes
    asks each of them to admit the start (:meth:`SyncScope.session_starting`, which raises the
    guard's error to refuse it) before the original runs, and hands them what started afterwards
    (:meth:`SyncScope.session_started`).
    """

    def __init__(self, name: str, targets: Callable[[], Iterable[tuple[type, str]]]) -> None:
        self.name = name
        self._targets = targets
        self._scopes: contextvars.ContextVar[tuple[SyncScope, ...]] = contextvars.ContextVar(
            f"vastcap_guard_{name}_scopes", default=()
        )
        self._lock = threading.Lock()
        self._users = 0
        #: (class, method name) -> (original, wrapper)
        self._installed: dict[tuple[type, str], tuple[Any, Any]] = {}
        _all_hooks.add(self)

    def __repr__(self) -> str:
        return f"SessionHooks({self.name!r}, installed={self.installed()})"

    # -- which scopes the calling code is in ------------------------------------------------------
    def scopes(self) -> tuple[SyncScope, ...]:
        """The active scopes of the calling code, outermost first."""
        return tuple(s for s in self._scopes.get() if s.active)

    def push(self, scope: SyncScope) -> contextvars.Token[tuple[SyncScope, ...]]:
        return self._scopes.set((*self._scopes.get(), scope))

    def reset(self, token: contextvars.Token[tuple[SyncScope, ...]]) -> None:
        self._scopes.reset(token)

    # -- installing ------------------------------------------------------------------------------
    def wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """The wrapper of one session-starting method (a plain, blocking method)."""
        hooks = self

        @functools.wraps(original)
        def wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
            scopes = hooks.scopes()
            if not scopes:
                return original(instance, *args, **kwargs)
            for scope in scopes:
                scope.session_starting()
            result = original(instance, *args, **kwargs)
            for scope in scopes:
                scope.session_started(instance, result)
            return result

        return wrapper

    def acquire(self) -> None:
        """One more active scope; the first installs the wrappers."""
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            for cls, name in self._targets():
                original = cls.__dict__.get(name) or getattr(cls, name)
                wrapper = self.wrap(original)
                wrapper.__vastcap_guard_original__ = original  # type: ignore[attr-defined]
                setattr(cls, name, wrapper)
                self._installed[(cls, name)] = (original, wrapper)

    def release(self) -> None:
        """One scope fewer; the last restores the original methods."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            for (cls, name), (original, wrapper) in list(self._installed.items()):
                if cls.__dict__.get(name) is wrapper:
                    setattr(cls, name, original)
                # else: someone patched over us (a test's monkeypatch); our wrapper below theirs
                # passes calls straight through now that no scope is active
            self._installed.clear()

    def installed(self) -> bool:
        with self._lock:
            return bool(self._installed)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # the parent's lock may have been held by another thread


def _after_fork_in_child() -> None:
    for hooks in list(_all_hooks):
        hooks._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SyncScope:
    """One entry into a guard (a decorated call or a ``with`` block) in blocking code.

    Subclasses set :attr:`hooks`, :attr:`wording` and :attr:`logger`, and implement
    :meth:`track`, :meth:`stop_sessions` and :meth:`leave` in their framework's idiom.
    """

    hooks: ClassVar[SessionHooks]
    wording: ClassVar[Wording]
    logger: ClassVar[logging.Logger]

    def __init__(self, owner: ScopedGuard) -> None:
        self.owner = owner
        # decided where the reading arrives (the poller thread): stop_sessions must be thread-safe
        self.run = GuardedRun(owner.config, self.wording, logger=self.logger, on_stop=self._on_stop,
                              on_fork=self.forget)
        #: False once the scope has ended (a thread that copied the context may outlive it)
        self.active = False
        self._token: contextvars.Token[tuple[SyncScope, ...]] | None = None

    # -- the adapter's part ----------------------------------------------------------------------
    def track(self, obj: Any) -> None:
        """Remember a session object (raise ``TypeError`` for anything else)."""
        raise NotImplementedError

    def stop_sessions(self, error: GuardError) -> None:
        """The run stopped: stop every tracked session so the pending or next call fails. Called
        from the thread that decided (usually the poller's); must not block; idempotent."""
        raise NotImplementedError

    def leave(self, error: GuardError | None) -> None:
        """The scope ends, in the script's thread; ``error`` is the stop, if any (then nothing of
        the stopped sessions may be left running)."""

    def forget(self) -> None:
        """In a forked child: the parent's sessions are not this process's to stop."""

    # -- session starts (called by the hooks) ----------------------------------------------------
    def session_starting(self) -> None:
        """A session is about to start: admitted on the latest reading, or raises the stop error."""
        self.run.admit_blocking()

    def session_started(self, instance: Any, result: Any) -> None:
        """A session started: ``instance`` is the object whose method started it, ``result`` what
        the method returned. Watches the result; override to watch something else."""
        self.watch(result)

    def watch(self, obj: T) -> T:
        self.track(obj)
        error = self.run.tripped
        if error is not None:  # stopped meanwhile: this one stops too, and the start fails
            self.stop_sessions(error)
            raise error.with_traceback(None)
        return obj

    def _on_stop(self, error: GuardError, at_start: bool) -> None:
        if not at_start:
            self.stop_sessions(error)

    # -- entering and leaving --------------------------------------------------------------------
    def enter(self) -> None:
        self.run.start_blocking()
        self.hooks.acquire()
        self.active = True
        self._token = self.hooks.push(self)

    def exit(self, exc: BaseException | None) -> None:
        try:
            self._deactivate()
        finally:
            self.run.close(wait=THREAD_WAIT)
            self.leave(self.run.tripped)
        self._raise_outcome(exc)

    def _deactivate(self) -> None:
        if not self.active:
            return
        self.active = False
        token, self._token = self._token, None
        try:
            if token is not None:
                self.hooks.reset(token)
        finally:
            self.hooks.release()

    def _raise_outcome(self, exc: BaseException | None) -> None:
        """After a stop, the body ends with the guard's error (chaining what the framework raised)."""
        error = self.run.tripped
        if error is None:
            return
        if exc is None:
            raise error.with_traceback(None)
        if isinstance(exc, GuardError) or not isinstance(exc, Exception):
            return  # already ours, or KeyboardInterrupt / SystemExit: let it through
        raise error.with_traceback(None) from exc


class RunState:
    """The state of a guard's current (or last) run, for the objects the adapters' ``guard()``
    functions return: ``tripped``, ``balance``, ``forecast``, ``snapshot()``. Before any run they
    show a fresh guard's. A subclass sets ``config`` and says which run is current."""

    config: GuardConfig

    def _latest_run(self) -> GuardedRun | None:
        raise NotImplementedError

    @property
    def tripped(self) -> GuardError | None:
        """The error the current (or last) run stopped with, if any."""
        run = self._latest_run()
        return run.tripped if run is not None else None

    @property
    def balance(self) -> Decimal | None:
        """The last balance read in the current (or last) run."""
        run = self._latest_run()
        return run.balance if run is not None else None

    @property
    def forecast(self) -> Forecast:
        """Spend per minute and minutes left in the current (or last) run (``state='unknown'`` until
        enough readings; see :class:`vastcap_guard.forecast.Forecast`)."""
        run = self._latest_run()
        return run.forecast if run is not None else Guard(self.config).forecast

    def snapshot(self) -> dict[str, object]:
        """Counters of the current (or last) run: balance, balance_start, spent, checks,
        check_failures, tripped, spend_per_minute, minutes_left (rounded for people)."""
        run = self._latest_run()
        return run.snapshot() if run is not None else Guard(self.config).snapshot()


class ScopedGuard(RunState):
    """What an adapter's ``guard()`` returns: a decorator and a context manager.

    Each call of a decorated function and each ``with`` block is a separate guarded run with its
    own pre-flight, counters and stop state. Subclasses set :attr:`scope_class`.
    """

    scope_class: ClassVar[type[SyncScope]]

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self._last: SyncScope | None = None

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(api_key={c.masked_key!r}, api_url={c.safe_api_url!r}, interval={c.interval!r}, "
            f"min_balance={str(c.min_balance)!r}, max_failures={c.max_failures!r})"
        )

    # -- decorator and context manager -----------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn):
            raise TypeError(f"{type(self).__name__} decorates plain functions, not generators or async functions.")

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast(F, run)

    def __enter__(self) -> ScopedGuard:
        scope = self.scope_class(self)
        self._last = scope
        scope.enter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._scope().exit(exc)

    # -- inside a run ----------------------------------------------------------------------------
    def _scope(self, *, last: bool = False) -> SyncScope:
        for scope in reversed(self.scope_class.hooks.scopes()):
            if scope.owner is self:
                return scope
        if last and self._last is not None:
            return self._last
        raise RuntimeError("This guard is not active here: use it inside its `with` block or decorated function.")

    def _latest_run(self) -> GuardedRun | None:
        try:
            return self._scope(last=True).run
        except RuntimeError:
            return None

    def watch(self, obj: T) -> T:
        """Track a session created outside the guarded code; it is stopped with the others. Returns
        its argument. Raises the guard's error (after stopping it) if the run has already stopped."""
        return self._scope().watch(obj)

    def ensure_funds(self, cost: object) -> Decimal:
        """Account for ``cost`` USD about to be spent; return the projected balance. Raises the
        :class:`GuardError` (and stops the run's sessions) when the account cannot pay it."""
        return self._scope().run.ensure_funds_blocking(cost)

def build_config(
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
) -> GuardConfig:
    """The :class:`GuardConfig` of a Python ``guard(...)`` call; a bad value raises
    :class:`~vastcap_guard.ConfigError` naming the keyword argument."""
    if callable(api_key):
        raise TypeError("Use the decorator with parentheses: @guard() or @guard(api_key=...).")
    return GuardConfig.build(
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
        names=PYTHON_NAMES,
    )
