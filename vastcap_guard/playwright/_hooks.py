"""Wrapping the session-starting methods of every installed Playwright flavor while a guard
scope is active.

The wrappers are installed on the public classes of both APIs of Playwright and of its forks
(:mod:`._flavors`) when the first scope opens and removed when the last one closes. Inside, a
context variable says which guard scopes the *calling* code runs in: a call made outside every
scope (another thread, another asyncio task started outside the guard) goes straight to the
original method.

One more wrapper goes on each flavor's ``sync_playwright()`` class, ``__exit__``: there the
scopes of the calling code finish the closes they scheduled on that Playwright's loop before it
tears its connection down (:meth:`Scope.drain_sync`).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from . import _flavors

logger = logging.getLogger("vastcap_guard.playwright")

__all__ = ["HOOKED", "Scope", "acquire", "current_scopes", "installed", "push", "release", "reset"]


class Scope(Protocol):
    #: False once the scope has ended (a task or thread that copied the context may outlive it)
    active: bool

    def check_start_blocking(self) -> None: ...

    async def check_start_async(self) -> None: ...

    def track_started(self, obj: Any) -> None: ...

    def drain_sync(self, loop: Any) -> None: ...


#: class name -> methods that start a browser session
HOOKED: dict[str, tuple[str, ...]] = {
    "BrowserType": ("launch", "launch_persistent_context", "connect", "connect_over_cdp"),
    "Browser": ("new_context", "new_page"),
    "BrowserContext": ("new_page",),
}

_scopes: contextvars.ContextVar[tuple[Scope, ...]] = contextvars.ContextVar(
    "vastcap_guard_playwright_scopes", default=()
)
_lock = threading.Lock()
_users = 0
#: (class, method name) -> (original, wrapper)
_installed: dict[tuple[type, str], tuple[Callable[..., Any], Callable[..., Any]]] = {}


def current_scopes() -> tuple[Scope, ...]:
    return _scopes.get()


def push(scope: Scope) -> contextvars.Token[tuple[Scope, ...]]:
    return _scopes.set((*_scopes.get(), scope))


def reset(token: contextvars.Token[tuple[Scope, ...]]) -> None:
    _scopes.reset(token)


def _sync_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        scopes = [s for s in _scopes.get() if s.active]
        if not scopes:
            return original(self, *args, **kwargs)
        for scope in scopes:
            scope.check_start_blocking()
        result = original(self, *args, **kwargs)
        for scope in scopes:
            scope.track_started(result)
        return result

    return wrapper


def _async_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        scopes = [s for s in _scopes.get() if s.active]
        if not scopes:
            return await original(self, *args, **kwargs)
        for scope in scopes:
            await scope.check_start_async()
        result = await original(self, *args, **kwargs)
        for scope in scopes:
            scope.track_started(result)
        return result

    return wrapper


def _exit_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    """``PlaywrightContextManager.__exit__``: drain the closes of the calling code's scopes first.

    ``with sync_playwright()`` binds ``__exit__`` when the block starts, so this wrapper may run
    after every scope has ended (then it does nothing), and the original runs whatever happens.
    """

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any) -> Any:
        scopes = _scopes.get()
        if scopes and not getattr(self, "_exit_was_called", False):
            loop = getattr(self, "_loop", None)
            for scope in scopes:
                try:
                    scope.drain_sync(loop)
                except Exception:  # never keep Playwright from stopping
                    logger.debug("finishing the guard's closes failed", exc_info=True)
        return original(self, *args)

    return wrapper


Maker = Callable[[Callable[..., Any]], Callable[..., Any]]


def targets() -> list[tuple[type, str, Maker]]:
    """(class, method, wrapper maker) for every hooked method of every installed flavor."""
    out: list[tuple[type, str, Maker]] = []
    for flavor in _flavors.available():
        for module, make in ((flavor.sync_api, _sync_wrapper), (flavor.async_api, _async_wrapper)):
            for cls_name, methods in HOOKED.items():
                cls = getattr(module, cls_name, None)
                if cls is None:
                    continue
                for name in methods:
                    if hasattr(cls, name):
                        out.append((cls, name, make))
        manager = flavor.sync_context_manager()
        if manager is not None and "__exit__" in manager.__dict__:
            out.append((manager, "__exit__", _exit_wrapper))
    return out


def acquire() -> None:
    """One more active scope; the first installs the wrappers."""
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        for cls, name, make in targets():
            original = cls.__dict__.get(name) or getattr(cls, name)
            wrapper = make(original)
            wrapper.__vastcap_guard_original__ = original  # type: ignore[attr-defined]
            setattr(cls, name, wrapper)
            _installed[(cls, name)] = (original, wrapper)


def release() -> None:
    """One scope fewer; the last restores the original methods."""
    global _users
    with _lock:
        _users = max(0, _users - 1)
        if _users:
            return
        for (cls, name), (original, wrapper) in list(_installed.items()):
            if cls.__dict__.get(name) is wrapper:
                setattr(cls, name, original)
            # else: someone patched over us (a test's monkeypatch); our wrapper below theirs
            # passes calls straight through now that no scope is active
        _installed.clear()


def installed() -> bool:
    with _lock:
        return bool(_installed)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's lock may have been held by another thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
