"""``CostGuardMiddleware``: drop requests that would spend money the account does not have."""

from __future__ import annotations

from typing import Any

from .extension import get_guard

__all__ = ["COST_META_KEY", "CostGuardMiddleware"]

#: ``Request.meta`` key holding a request's estimated cost in USD
COST_META_KEY = "vastcap_cost"


class CostGuardMiddleware:
    """Downloader middleware::

        DOWNLOADER_MIDDLEWARES = {"vastcap_guard.scrapy.CostGuardMiddleware": 50}

    A request that will spend money says so with ``meta["vastcap_cost"]`` (USD estimate). Such a
    request is dropped with ``IgnoreRequest`` (and counted in ``vastcap/requests_blocked``) once
    the guard has tripped, or when the last balance reading minus the spend reserved (by earlier
    such requests) that no reading shows yet would fall below ``VASTCAP_MIN_BALANCE`` or pass
    ``VASTCAP_MAX_SPEND`` (:meth:`vastcap_guard.Guard.reserve` decides). Once the guard has
    tripped the spider is closed with its reason. Requests without the key pass untouched, and
    everything passes when the ``BalanceGuard`` extension is not enabled.
    """

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> CostGuardMiddleware:
        return cls(crawler)

    def process_request(self, request: Any, spider: Any = None) -> None:
        meta = request.meta
        if COST_META_KEY not in meta:
            return None
        guard = get_guard(self.crawler)
        if guard is None:
            return None
        guard.check_request(request, meta[COST_META_KEY])
        return None
