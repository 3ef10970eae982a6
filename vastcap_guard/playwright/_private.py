"""The one place that uses Playwright's private API (``_impl_obj``, ``_loop`` and ``_sync``).

Sync-API objects belong to the thread that created them: calling ``browser.close()`` from the
guard's poller thread fails with a greenlet error and does nothing. What works is scheduling the
close on Playwright's own event loop, which runs (in the script's thread) whenever the script is
inside a Playwright call. The forks (patchright, rebrowser-playwright) are copies of Playwright's
client and carry the same attributes. ``tests/playwright/test_playwright_private_api.py`` fails
loudly if a release of any installed flavor changes what this relies on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Coroutine
from typing import Any

__all__ = ["PrivateApiChanged", "drain_sync_closes", "schedule_sync_close"]


logger = logging.getLogger("vastcap_guard.playwright")


class PrivateApiChanged(RuntimeError):
    """Playwright no longer has the private attributes the background close needs."""


async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
    # the task run_coroutine_threadsafe makes never ends with an exception: a context's close
    # raises TargetClosedError when its browser closed under it first (Playwright 1.65)
    try:
        await coro
    except Exception:  # already closed, or its Playwright is gone: either way it is closed
        logger.debug("a background close failed", exc_info=True)


def schedule_sync_close(obj: Any, reason: str) -> concurrent.futures.Future[Any] | None:
    """Close a sync-API ``Browser`` or ``BrowserContext`` from any thread, with ``reason``.

    Returns the future of the close (it never ends with an exception), or ``None`` when
    Playwright's loop is already closed (the object can do nothing any more). Raises
    :class:`PrivateApiChanged` if Playwright changed.
    """
    try:
        impl = obj._impl_obj
        loop = obj._loop
        close = impl.close
    except AttributeError as exc:
        raise PrivateApiChanged(f"Playwright's sync API changed ({exc}); cannot close from another thread") from None
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise PrivateApiChanged("Playwright's sync objects no longer carry their event loop as _loop")
    if loop.is_closed():
        return None
    coro = _quietly(close(reason=reason))
    try:
        return asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop closed between the check and the call
        coro.close()
        return None


def drain_sync_closes(obj: Any, futures: list[concurrent.futures.Future[Any]], deadline: float) -> bool:
    """In the thread that owns ``obj``: run Playwright's loop until the closes scheduled by
    :func:`schedule_sync_close` on it have finished, or ``deadline`` (``time.monotonic()``) passed.

    Why: the sync API runs its loop only inside a Playwright call. A close scheduled from the
    poller thread makes the script's pending call fail as soon as the page is gone, which returns
    control to the script *before* the driver has answered the close itself. If
    ``with sync_playwright()`` then ends, it tears the connection down under that close and
    Playwright 1.40-1.64 (and the forks built on them) print "Task was destroyed but it is
    pending!" / "Future exception was never retrieved" at exit. Running the loop here, exactly as
    any sync call does (``SyncBase._sync``), lets the close finish first. Returns True when every
    close has finished.
    """
    waiting = [f for f in futures if not f.done()]
    if not waiting:
        return True
    try:
        loop = obj._loop
        run = obj._sync
    except AttributeError:
        return False
    if not isinstance(loop, asyncio.AbstractEventLoop) or loop.is_closed():
        return False
    if getattr(getattr(obj, "_dispatcher_fiber", None), "dead", False):
        return False  # the connection ended (1.40-1.4x would switch to the dead fiber forever)

    async def wait() -> None:
        # polling, not asyncio.wrap_future: no second future whose exception could go unretrieved,
        # and no callback into a loop that may be closed by the time the close finishes
        while not all(f.done() for f in waiting) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    try:
        run(wait())
    except Exception:  # the connection is gone (the driver exited): nothing can finish them now
        return False
    return all(f.done() for f in waiting)
