"""Solving captchas through the VastCap API *as Scrapy requests*, so the reactor never blocks.

``createTask`` and ``getTaskResult`` are ordinary POST requests that the engine downloads like any
page. The createTask request carries ``meta["vastcap_cost"]``: vastcap-guard's
``CostGuardMiddleware`` drops it (``IgnoreRequest``) when the account could not pay for it, so a
crawl never starts a solve it cannot afford.

Usage in a spider callback (an async generator)::

    solver = VastCapSolver.from_crawler(self.crawler)
    yield solver.create_task(response.url, site_key, callback=self.on_created, cb_kwargs={...})

    async def on_created(self, response, ...):
        task_id = solver.task_id(response)                      # raises SolveError
        yield solver.task_result(task_id, callback=self.on_result, cb_kwargs={...})

    async def on_result(self, response, task_id, ...):
        solution = solver.solution(response)                    # None while processing
        if solution is None:
            await solver.wait()
            yield solver.task_result(task_id, ...)              # ask again
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import scrapy
from scrapy.http import Response

#: the download slot the API calls use (configured in settings.DOWNLOAD_SLOTS)
API_SLOT = "vastcap-api"


class SolveError(Exception):
    """The API refused or failed a task. ``code`` is VastCap's errorCode (or a local one)."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code


class VastCapSolver:
    def __init__(self, api_url: str, api_key: str | None, cost: Decimal, poll_interval: float = 0.25,
                 timeout: float = 60.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.cost = cost
        self.poll_interval = poll_interval
        self.timeout = timeout

    @classmethod
    def from_crawler(cls, crawler: Any) -> VastCapSolver:
        s = crawler.settings
        return cls(
            api_url=s.get("VASTCAP_API_URL") or "http://127.0.0.1:8787/api/solver",
            api_key=s.get("VASTCAP_API_KEY") or os.environ.get("VASTCAP_API_KEY"),
            cost=Decimal(str(s.get("CAPTCHA_COST", "0.002"))),
            poll_interval=s.getfloat("CAPTCHA_POLL_INTERVAL", 0.25),
            timeout=s.getfloat("CAPTCHA_TIMEOUT", 60.0),
        )

    def __repr__(self) -> str:  # never show the key
        return f"VastCapSolver(api_url={self.api_url!r})"

    # -- requests ------------------------------------------------------------------------------
    def _post(self, method: str, body: dict[str, Any], *, callback: Callable[..., Any],
              errback: Callable[..., Any] | None, cb_kwargs: dict[str, Any] | None,
              meta: dict[str, Any]) -> scrapy.Request:
        return scrapy.Request(
            f"{self.api_url}/{method}",
            method="POST",
            body=json.dumps({"clientKey": self._api_key or "", **body}),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            callback=callback,
            errback=errback,
            cb_kwargs=cb_kwargs or {},
            # every poll of the same task is the same request: never filter them as duplicates
            dont_filter=True,
            # the API answers errors with any status: let the callback read the body
            meta={"download_slot": API_SLOT, "handle_httpstatus_all": True, "dont_retry": True, **meta},
            priority=10,  # finish solves already started before fetching more pages
        )

    def create_task(self, page_url: str, site_key: str, *, callback: Callable[..., Any],
                    errback: Callable[..., Any] | None = None, cb_kwargs: dict[str, Any] | None = None,
                    task_type: str = "ReCaptchaV2TaskProxyless") -> scrapy.Request:
        """The createTask request. It costs money, and says so in ``meta["vastcap_cost"]``."""
        task = {"type": task_type, "websiteURL": page_url, "websiteKey": site_key}
        return self._post("createTask", {"task": task}, callback=callback, errback=errback,
                          cb_kwargs=cb_kwargs, meta={"vastcap_cost": float(self.cost)})

    def task_result(self, task_id: str, *, callback: Callable[..., Any],
                    errback: Callable[..., Any] | None = None,
                    cb_kwargs: dict[str, Any] | None = None) -> scrapy.Request:
        """One getTaskResult poll (free: the task was paid for when it was created)."""
        return self._post("getTaskResult", {"taskId": task_id}, callback=callback, errback=errback,
                          cb_kwargs={"task_id": task_id, **(cb_kwargs or {})}, meta={})

    # -- answers -------------------------------------------------------------------------------
    @staticmethod
    def _json(response: Response) -> dict[str, Any]:
        try:
            data = json.loads(response.text)
        except (ValueError, AttributeError):
            raise SolveError("ERROR_BAD_ANSWER", f"HTTP {response.status}, not JSON") from None
        if not isinstance(data, dict):
            raise SolveError("ERROR_BAD_ANSWER", f"HTTP {response.status}, not a JSON object")
        err = data.get("error")
        if isinstance(err, dict):
            raise SolveError(str(err.get("errorCode", "ERROR_UNKNOWN")), str(err.get("errorDescription", "")))
        return data

    def task_id(self, response: Response) -> str:
        """The ``taskId`` of a createTask answer, or :class:`SolveError`."""
        task_id = self._json(response).get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise SolveError("ERROR_BAD_ANSWER", "createTask answered without a taskId")
        return task_id

    def solution(self, response: Response) -> dict[str, Any] | None:
        """The solution of a getTaskResult answer; ``None`` while processing; else :class:`SolveError`."""
        data = self._json(response)
        status = data.get("status")
        if status == "processing":
            return None
        if status == "ready" and isinstance(data.get("solution"), dict):
            solution: dict[str, Any] = data["solution"]
            return solution
        raise SolveError("ERROR_BAD_ANSWER", f"unexpected task status {status!r}")

    async def wait(self) -> None:
        """Wait ``poll_interval`` without blocking the reactor (asyncio, Twisted or reactorless)."""
        await _sleep(self.poll_interval)


async def _sleep(seconds: float) -> None:
    try:  # Scrapy 2.18+: works under every reactor and in reactorless mode
        from scrapy.utils.asyncio import sleep
    except ImportError:
        sleep = None
    if sleep is not None:
        await sleep(seconds)
        return
    from scrapy.utils.reactor import is_asyncio_reactor_installed

    if is_asyncio_reactor_installed():
        await asyncio.sleep(seconds)
    else:  # a plain Twisted reactor: a coroutine callback may await a Deferred
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await deferLater(reactor, seconds)
