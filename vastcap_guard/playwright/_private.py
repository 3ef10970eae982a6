"""The one place that uses Playwright's private API (``_impl_obj`` and ``_loop``).

Sync-API objects belong to the thread that created them: calling ``browser.close()`` from the
guard's poller thread fails with a greenlet error and does nothing. What works is scheduling the
close on Playwright's own event loop, which runs (in the script's thread) whenever the script is
inside a Playwright call. ``tests/playwright/test_private_api.py`` fails loudly if a Playwright
release changes what this relies on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

__all__ = ["PrivateApiChanged", "schedule_sync_close"]


class PrivateApiChanged(RuntimeError):
    """Playwright no longer has the private attributes the background close needs."""


def schedule_sync_close(obj: Any, reason: str) -> concurrent.futures.Future[Any] | None:
    """Close a sync-API ``Browser`` or ``BrowserContext`` from any thread, with ``reason``.

    Returns the future of the close, or ``None`` when Playwright's loop is already closed (the
    object can do nothing any more). Raises :class:`PrivateApiChanged` if Playwright changed.
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
    coro = close(reason=reason)
    try:
        return asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop closed between the check and the call
        coro.close()
        return None
