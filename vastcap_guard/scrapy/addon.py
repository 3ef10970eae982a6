"""The Scrapy add-on: ``ADDONS = {"vastcap_guard.scrapy.Addon": 500}`` guards the crawl in one line.

Scrapy calls :meth:`Addon.update_settings` once per crawler, after the project, command-line and
spider settings are merged and before any component is built. The add-on then enables
:class:`BalanceGuard` (``EXTENSIONS``, priority :data:`EXTENSION_PRIORITY`) and
:class:`CostGuardMiddleware` (``DOWNLOADER_MIDDLEWARES``, priority :data:`MIDDLEWARE_PRIORITY`),
unless the user already has an entry for that component (as a class or an import path, in the
setting or its ``*_BASE`` counterpart, with any priority or ``None`` to disable it): the user's
entry wins. ``VASTCAP_ENABLED = False`` enables nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy.utils.misc import load_object

from ..errors import ConfigError
from .extension import BalanceGuard, _enabled
from .middleware import CostGuardMiddleware

__all__ = ["EXTENSION_PRIORITY", "MIDDLEWARE_PRIORITY", "Addon"]

logger = logging.getLogger("vastcap_guard.scrapy")

#: where the add-on puts ``BalanceGuard`` in ``EXTENSIONS`` (the usual place for extensions)
EXTENSION_PRIORITY = 500
#: where the add-on puts ``CostGuardMiddleware`` in ``DOWNLOADER_MIDDLEWARES``: early, so that a
#: request the account cannot pay for never reaches retry, proxy or cookies middlewares
MIDDLEWARE_PRIORITY = 50

_EXTENSION_PATH = "vastcap_guard.scrapy.BalanceGuard"
_MIDDLEWARE_PATH = "vastcap_guard.scrapy.CostGuardMiddleware"


def _entry(settings: Any, name: str, cls: type, path: str) -> tuple[bool, object]:
    """Whether ``cls`` has an entry in the ``name`` component dict or its ``_BASE``, and its value."""
    for setting in (name, f"{name}_BASE"):
        components = settings.getdict(setting)
        for key, value in components.items():
            if key is cls:
                return True, value
            if isinstance(key, str):
                if key == path:
                    return True, value
                try:
                    found = load_object(key)
                except Exception:  # a broken entry of the user's: Scrapy itself reports it later
                    found = None
                if found is cls:
                    return True, value
    return False, None


def _setdefault(settings: Any, name: str, cls: type, path: str, priority: int) -> bool:
    """Add ``path: priority`` to the ``name`` dict unless ``cls`` already has an entry; True if added."""
    present, _ = _entry(settings, name, cls, path)
    if present:
        return False
    components = settings.getdict(name)
    components[path] = priority
    # keep the setting's own priority, as Scrapy's setdefault_in_component_priority_dict does
    settings.set(name, components, settings.getpriority(name) or 0)
    return True


class Addon:
    """Scrapy add-on enabling the balance guard::

        ADDONS = {"vastcap_guard.scrapy.Addon": 500}
        VASTCAP_API_KEY = "..."   # or the VASTCAP_API_KEY environment variable
    """

    def __repr__(self) -> str:
        return "vastcap_guard.scrapy.Addon"

    def update_settings(self, settings: Any) -> None:
        try:
            enabled = _enabled(settings)
        except ConfigError:
            # a value such as "perhaps": enable the extension, which closes the crawl at start
            # with vastcap_config_error naming the setting, rather than guessing here
            enabled = True
        if not enabled:
            present, value = _entry(settings, "EXTENSIONS", BalanceGuard, _EXTENSION_PATH)
            if not (present and value is not None):
                # (an enabled BalanceGuard says so itself)
                logger.info("vastcap-guard is off (VASTCAP_ENABLED = False): the crawl is not guarded.")
            return
        _setdefault(settings, "EXTENSIONS", BalanceGuard, _EXTENSION_PATH, EXTENSION_PRIORITY)
        _setdefault(settings, "DOWNLOADER_MIDDLEWARES", CostGuardMiddleware, _MIDDLEWARE_PATH,
                    MIDDLEWARE_PRIORITY)
