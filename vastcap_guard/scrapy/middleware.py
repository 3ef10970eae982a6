"""``CostGuardMiddleware``: drop requests that would spend money the account does not have."""

from __future__ import annotations

from collections.abc import Coroutine
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

    A request that passed holds its reservation until a balance reading shows the spend; if it
    fails or is dropped before it is sent (``process_exception``), the reservation is released.

    With ``VASTCAP_ON_LOW_BALANCE = "pause"``, a paid request the balance cannot pay pauses the
    crawl instead of being dropped, and waits (as do paid requests that arrive while the crawl is
    paused) until a top-up pays for it, then goes on; it is dropped only if the crawl closes first.
    """

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> CostGuardMiddleware:
        return cls(crawler)

    def process_request(self, request: Any, spider: Any = None) -> Coroutine[Any, Any, None] | None:
        # a plain method, so the requests that pass (nearly all) cost no coroutine: it returns an
        # awaitable only while a paused crawl makes the request wait for a top-up
        meta = request.meta
        if COST_META_KEY not in meta:
            return None
        guard = get_guard(self.crawler)
        if guard is None:
            return None
        return guard.check_request(request, meta[COST_META_KEY])

    def process_response(self, request: Any, response: Any, spider: Any = None) -> Any:
        guard = get_guard(self.crawler)
        if guard is not None:
            guard.request_sent(request)
        return response

    def process_exception(self, request: Any, exception: BaseException, spider: Any = None) -> None:
        # dropped before it was sent (IgnoreRequest from the downloader gate or another
        # middleware), or failed on the way: it spent nothing
        guard = get_guard(self.crawler)
        if guard is not None:
            guard.release_request(request)
        return None
