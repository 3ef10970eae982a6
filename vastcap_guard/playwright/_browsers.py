"""The browsers and contexts of one guarded scope, and closing them on a stop (from any thread).

An async-API object is closed on its own event loop (a task there, or
``run_coroutine_threadsafe`` from the poller thread). A sync-API object belongs to the script's
thread: the close is scheduled on Playwright's own loop (:mod:`._private`), which runs whenever
the script is inside a Playwright call, and is finished (drained) in the script's thread before
``with sync_playwright()`` ends (a hook on its ``__exit__``) and when the scope ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import GuardError
from . import _flavors
from ._private import PrivateApiChanged, drain_sync_closes, schedule_sync_close

__all__ = ["Browsers"]

logger = logging.getLogger("vastcap_guard.playwright")

T = TypeVar("T")

#: how long leaving a stopped scope (or ``with sync_playwright()``) waits for its browsers to close
CLOSE_WAIT = 15.0


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def close_reason(error: GuardError) -> str:
    return f"{error.reason}: {error.message}"


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
    #: the thread that started (or watched) it: a sync object can only be used there
    thread: int = field(default_factory=threading.get_ident)
    closing: bool = False
    #: sync: the close scheduled on Playwright's loop (None: not scheduled)
    future: concurrent.futures.Future[Any] | None = None


class Browsers:
    """What one scope launched, connected or opened, and how to close it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: list[_Target] = []
        #: async closes under way (tasks on the script's loop, or futures from the poller thread)
        self._pending: list[asyncio.Future[Any] | concurrent.futures.Future[Any]] = []
        self._closing_all = False
        self._private_warned = False

    def track(self, obj: Any, loop: asyncio.AbstractEventLoop | None = None) -> _Target:
        """Remember a Browser or BrowserContext (a Page stands for its context)."""
        found = _flavors.kind_of(obj)
        if found is None:
            raise TypeError(f"watch() takes a Playwright Browser, BrowserContext or Page, not {type(obj).__name__}")
        kind, cls_name = found
        what = obj.context if cls_name == "Page" else obj
        target_loop = (_running_loop() or loop) if kind == "async" else None
        with self._lock:
            for known in self._targets:
                if known.obj is what:
                    return known
            target = _Target(what, kind, target_loop)
            self._targets.append(target)
        event = "disconnected" if cls_name == "Browser" else "close"
        try:
            what.once(event, lambda *_: self._forget(target))
        except Exception:  # pragma: no cover - only keeps the list short
            logger.debug("cannot listen for %s on %s", event, type(what).__name__, exc_info=True)
        return target

    def _forget(self, target: _Target) -> None:
        with self._lock:
            if target in self._targets and not self._closing_all:
                self._targets.remove(target)

    def forget_all(self) -> None:
        """In a forked child: the parent's browsers are not ours to close."""
        self._lock = threading.Lock()
        self._targets = []
        self._pending = []

    # -- closing -------------------------------------------------------------------------------
    def close_all(self, error: GuardError) -> None:
        """The guard stopped (any thread): close every tracked browser and context."""
        with self._lock:
            self._closing_all = True
            targets = list(self._targets)
        for target in targets:
            self.close(target, error)

    def close(self, target: _Target, error: GuardError) -> None:
        with self._lock:
            if target.closing:
                return
            target.closing = True
        reason = close_reason(error)
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
            with self._lock:
                target.future = future
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

    def drain_sync(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """In the script's thread: let the closes scheduled on Playwright's loop (``loop``, or
        every loop) finish before the connection goes away (see :func:`._private.drain_sync_closes`).

        Called when a stopped scope ends and by the hook on ``sync_playwright()``'s ``__exit__``.
        Only objects of this thread: another thread's Playwright cannot be run from here.
        """
        me = threading.get_ident()
        with self._lock:
            targets = [t for t in self._targets if t.kind == "sync" and t.thread == me and t.future is not None
                       and not t.future.done() and (loop is None or getattr(t.obj, "_loop", None) is loop)]
        deadline = time.monotonic() + CLOSE_WAIT
        for target in targets:
            assert target.future is not None
            drain_sync_closes(target.obj, [target.future], deadline)

    def finish_sync(self, error: GuardError) -> None:
        """Leaving a stopped sync scope: finish closing in the script's thread, Playwright's owner."""
        self.close_all(error)
        self.drain_sync()
        reason = close_reason(error)
        me = threading.get_ident()
        with self._lock:
            # what the background could not close (private API changed, or the close is still
            # running): close it the public way, here
            targets = [t for t in self._targets if t.kind == "sync" and t.thread == me
                       and (t.future is None or not t.future.done())]
        for target in targets:
            try:
                target.obj.close(reason=reason)
            except Exception:
                logger.debug("closing %s failed", type(target.obj).__name__, exc_info=True)

    async def finish_async(self, error: GuardError, loop: asyncio.AbstractEventLoop | None) -> None:
        self.close_all(error)
        with self._lock:
            mine = [f for f in self._pending if isinstance(f, asyncio.Future) and f.get_loop() is loop]
            others = [f for f in self._pending if isinstance(f, concurrent.futures.Future)]
        waits: list[asyncio.Future[Any]] = [*mine, *(asyncio.wrap_future(f) for f in others)]
        if waits:
            await asyncio.wait(waits, timeout=CLOSE_WAIT)
