"""Scrapy integration: the ``BalanceGuard`` extension and the ``CostGuardMiddleware``.

::

    EXTENSIONS = {"vastcap_guard.scrapy.BalanceGuard": 500}
    DOWNLOADER_MIDDLEWARES = {"vastcap_guard.scrapy.CostGuardMiddleware": 50}
    VASTCAP_API_KEY = "..."          # or the VASTCAP_API_KEY environment variable

See docs/scrapy.md for the settings, close reasons, stats and signals.
"""

from .extension import SETTING_NAMES, BalanceGuard, config_from_settings, get_guard
from .middleware import COST_META_KEY, CostGuardMiddleware

__all__ = [
    "COST_META_KEY",
    "SETTING_NAMES",
    "BalanceGuard",
    "CostGuardMiddleware",
    "config_from_settings",
    "get_guard",
]
