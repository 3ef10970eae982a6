"""A spider that crawls a site whose pages are gated by reCAPTCHA and pays VastCap to solve them.

Pages without a captcha are scraped and their links followed at once. A page with a captcha
(``<div class="g-recaptcha" data-sitekey=...>``) is scraped, and its links followed, only after
the captcha is solved: createTask, then getTaskResult until it is ready. Every solve costs
``CAPTCHA_COST``, so the account's balance really runs down, and vastcap-guard stops the crawl
(``finish_reason: vastcap_low_balance``) when it can no longer pay.

    scrapy crawl captchas                                  # DEMO_SITE_URL from the environment
    scrapy crawl captchas -a site_url=http://127.0.0.1:8788/ -O pages.jsonl
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from twisted.python.failure import Failure

from vastcap_demo.solver import SolveError, VastCapSolver
from vastcap_guard import GuardError
from vastcap_guard.scrapy import get_guard


class CaptchaSpider(scrapy.Spider):
    name = "captchas"
    solver: VastCapSolver
    site_url: str

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> CaptchaSpider:
        spider: CaptchaSpider = super().from_crawler(crawler, *args, **kwargs)
        spider.site_url = kwargs.get("site_url") or crawler.settings.get("DEMO_SITE_URL")
        spider.solver = VastCapSolver.from_crawler(crawler)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        yield scrapy.Request(self.site_url, callback=self.parse)

    # -- pages -----------------------------------------------------------------------------------
    async def parse(self, response: Response) -> AsyncIterator[Any]:
        page = {
            "url": response.url,
            "title": response.css("title::text").get(),
            "links": [response.urljoin(href) for href in response.css("a::attr(href)").getall()],
        }
        site_key = response.css("div.g-recaptcha::attr(data-sitekey)").get()
        if not site_key:
            for out in self.page_done(page):
                yield out
            return
        self.crawler.stats.inc_value("demo/captchas_seen")
        yield self.solver.create_task(response.url, site_key, callback=self.on_task_created,
                                      errback=self.on_api_failure, cb_kwargs={"page": page})

    def page_done(self, page: dict[str, Any], solution: dict[str, Any] | None = None) -> list[Any]:
        item = {"url": page["url"], "title": page["title"], "captcha": solution is not None}
        if solution is not None:
            item["token"] = str(solution.get("gRecaptchaResponse", ""))[:12] + "…"
        return [item, *(scrapy.Request(url, callback=self.parse) for url in page["links"])]

    # -- solving ---------------------------------------------------------------------------------
    async def on_task_created(self, response: Response, page: dict[str, Any]) -> AsyncIterator[Any]:
        try:
            task_id = self.solver.task_id(response)
        except SolveError as exc:
            self.solve_failed(page, exc)
            return
        yield self.solver.task_result(task_id, callback=self.on_task_result, errback=self.on_api_failure,
                                      cb_kwargs={"page": page, "started": time.monotonic()})

    async def on_task_result(self, response: Response, task_id: str, page: dict[str, Any],
                             started: float) -> AsyncIterator[Any]:
        try:
            solution = self.solver.solution(response)
            if solution is None and time.monotonic() - started > self.solver.timeout:
                raise SolveError("ERROR_TIMEOUT", f"not solved within {self.solver.timeout:g} s")
        except SolveError as exc:
            self.solve_failed(page, exc)
            return
        if solution is None:  # still processing: ask again a little later, without blocking
            await self.solver.wait()
            yield self.solver.task_result(task_id, callback=self.on_task_result, errback=self.on_api_failure,
                                          cb_kwargs={"page": page, "started": started})
            return
        self.crawler.stats.inc_value("demo/captchas_solved")
        for out in self.page_done(page, solution):
            yield out

    def solve_failed(self, page: dict[str, Any], exc: SolveError) -> None:
        self.crawler.stats.inc_value("demo/captchas_failed")
        self.crawler.stats.inc_value(f"demo/captcha_errors/{exc.code}")
        if exc.code == "ERROR_INSUFFICIENT_BALANCE":
            self.logger.warning("Captcha on %s not solved: the VastCap balance is too low "
                                "(vastcap-guard stops the crawl at its next check)", page["url"])
        else:
            self.logger.warning("Captcha on %s not solved: %s", page["url"], exc)

    async def on_api_failure(self, failure: Failure) -> None:
        request = getattr(failure, "request", None)
        url = request.cb_kwargs.get("page", {}).get("url", "?") if request is not None else "?"
        if not failure.check(IgnoreRequest):
            self.crawler.stats.inc_value("demo/captchas_failed")
            self.logger.warning("Captcha on %s not solved: the VastCap API call failed (%s)", url,
                                failure.getErrorMessage())
            return
        # CostGuardMiddleware dropped the paid createTask: with what is already being spent, the
        # account cannot pay for this captcha. The middleware only drops requests; ask the guard
        # whether the crawl can still pay at all. If not, ensure_funds() closes the spider with
        # the reason (vastcap_low_balance); otherwise only this captcha is skipped.
        self.crawler.stats.inc_value("demo/captchas_blocked")
        guard = get_guard(self.crawler)
        if guard is not None:
            try:
                await guard.ensure_funds(self.solver.cost)
            except GuardError as exc:
                self.logger.info("Captcha on %s not solved: %s", url, exc.reason)
                return
        self.logger.info("Captcha on %s skipped: vastcap-guard blocked the paid request", url)
