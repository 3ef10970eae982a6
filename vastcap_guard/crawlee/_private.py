"""The one place that reaches Crawlee's private attributes (public methods on them only).

- ``crawler._autoscaled_pool``: the pool that starts one task per request taken from the queue.
  Its public ``pause()`` / ``resume()`` hold new tasks back: the pause mode
  (``on_low_balance="pause"``). ``BasicCrawler`` offers no public way to reach it.
- ``crawler._browser_pool`` (``PlaywrightCrawler``): its public ``pre_launch_hook()`` lets the guard
  refuse to launch a browser after a stop. Without it nothing leaks either: the pre-navigation
  gate still keeps every request from leaving.

``tests/crawlee/test_crawlee_private_api.py`` fails loudly if a Crawlee release changes them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["browser_pool", "task_pool"]


def task_pool(crawler: Any) -> Any | None:
    """The crawler's autoscaled pool, if it can be paused and resumed."""
    pool = getattr(crawler, "_autoscaled_pool", None)
    if callable(getattr(pool, "pause", None)) and callable(getattr(pool, "resume", None)):
        return pool
    return None


def browser_pool(crawler: Any) -> Any | None:
    """The browser pool of a ``PlaywrightCrawler`` (``None`` for HTTP crawlers)."""
    pool = getattr(crawler, "_browser_pool", None)
    return pool if callable(getattr(pool, "pre_launch_hook", None)) else None
