"""Which Playwright distributions are installed: Playwright itself and its drop-in forks.

patchright and rebrowser-playwright ship their own module trees (``patchright.sync_api``,
``rebrowser_playwright.async_api``...) whose classes are copies of Playwright's, not the same
objects, so the guard hooks and recognises each tree's classes. camoufox launches through
Playwright's own classes and needs nothing here. Each tree is imported the first time a guard
scope opens, never at ``import vastcap_guard.playwright``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["DISTRIBUTIONS", "Flavor", "available", "installed_names", "kind_of"]

#: module name -> what users install (pip)
DISTRIBUTIONS: dict[str, str] = {
    "playwright": "playwright",
    "patchright": "patchright",
    "rebrowser_playwright": "rebrowser-playwright",
}


@dataclass(frozen=True)
class Flavor:
    """One installed distribution: its name and its two public API modules."""

    name: str
    sync_api: ModuleType
    async_api: ModuleType

    def api(self, kind: str) -> ModuleType:
        return self.sync_api if kind == "sync" else self.async_api

    def sync_context_manager(self) -> type | None:
        """``sync_playwright()``'s class, whose ``__exit__`` tears the connection down (private
        module path, the same in Playwright 1.40-1.65 and its forks); ``None`` if it moved."""
        try:
            module = importlib.import_module(f"{self.name}.sync_api._context_manager")
        except ImportError:
            return None
        cls = getattr(module, "PlaywrightContextManager", None)
        return cls if isinstance(cls, type) else None


def installed_names() -> list[str]:
    """The distributions that can be imported here (without importing them).

    A directory that merely has the name (a project's own ``playwright/`` folder of tests, on
    ``sys.path``) is a namespace package, not a distribution: it does not count.
    """
    found = []
    for name in DISTRIBUTIONS:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin is not None and spec.has_location:
            found.append(name)
    return found


@functools.cache
def available() -> tuple[Flavor, ...]:
    """Every installed distribution, imported. Cached: call it when a guard scope opens."""
    flavors = []
    for name in installed_names():
        try:
            flavors.append(Flavor(name, importlib.import_module(f"{name}.sync_api"),
                                  importlib.import_module(f"{name}.async_api")))
        except ImportError:  # a broken or partial install: the others still work
            continue
    return tuple(flavors)


@functools.cache
def _classes(kind: str, *names: str) -> tuple[type, ...]:
    return tuple(getattr(f.api(kind), n) for f in available() for n in names if hasattr(f.api(kind), n))


def kind_of(obj: Any) -> tuple[str, str] | None:
    """``("sync" | "async", "Browser" | "BrowserContext" | "Page")`` for a Playwright object of any
    installed flavor, or ``None``."""
    for kind in ("sync", "async"):
        for cls_name in ("Browser", "BrowserContext", "Page"):
            if isinstance(obj, _classes(kind, cls_name)):
                return kind, cls_name
    return None

