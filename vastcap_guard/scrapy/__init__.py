"""Scrapy integration: the ``Addon``, the ``BalanceGuard`` extension and the ``CostGuardMiddleware``.

::

    ADDONS = {"vastcap_guard.scrapy.Addon": 500}   # enables both at their documented priorities
    VASTCAP_API_KEY = "..."          # or the VASTCAP_API_KEY environment variable

or, by hand (Scrapy's older habit)::

    EXTENSIONS = {"vastcap_guard.scrapy.BalanceGuard": 500}
    DOWNLOADER_MIDDLEWARES = {"vastcap_guard.scrapy.CostGuardMiddleware": 50}
    VASTCAP_API_KEY = "..."          # or the VASTCAP_API_KEY environment variable

See docs/scrapy.md for the settings, close reasons, stats and signals.
"""

from .addon import EXTENSION_PRIORITY, MIDDLEWARE_PRIORITY, Addon
from .extension import SETTING_NAMES, BalanceGuard, GuardDropItem, config_from_settings, get_guard
from .middleware import COST_META_KEY, CostGuardMiddleware

__all__ = [
    "COST_META_KEY",
    "EXTENSION_PRIORITY",
    "MIDDLEWARE_PRIORITY",
    "SETTING_NAMES",
    "Addon",
    "BalanceGuard",
    "CostGuardMiddleware",
    "GuardDropItem",
    "config_from_settings",
    "get_guard",
]
