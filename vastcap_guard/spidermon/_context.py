"""What a monitor reads from Spidermon's ``data``: the stats, the settings, the running guard.

Kept out of :mod:`.monitors` (whose frames unittest hides in failure reports) so that a bug here
still shows a full traceback. Never raises on missing data: no stats, no crawler, no guard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..scrapy import get_guard

__all__ = ["guard_details", "setting_getter", "stats_of"]


def stats_of(data: Mapping[str, Any]) -> Mapping[str, object]:
    stats = data.get("stats")
    return stats if isinstance(stats, Mapping) else {}


def setting_getter(data: Mapping[str, Any]) -> Callable[[str], object]:
    """``get(name)`` on the crawler's settings (``None`` for everything without a crawler)."""
    settings = getattr(data.get("crawler"), "settings", None)

    def get(name: str) -> object:
        return settings.get(name) if settings is not None else None

    return get


def guard_details(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(the masked API key, the message the guard stopped with), as far as the crawler tells."""
    crawler = data.get("crawler")
    guard = get_guard(crawler) if crawler is not None else None
    if guard is None:
        return None, None
    masked = guard.config.masked_key if guard.config.api_key else None
    return masked, guard.tripped.message if guard.tripped is not None else None
