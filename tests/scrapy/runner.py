"""Run real Scrapy crawls with the BalanceGuard in this process and print what happened as JSON.

Used by the tests as ``python runner.py CONFIG.json``; CONFIG is::

    {"mode": "asyncio" | "twisted" | "reactorless",
     "log_file": "/tmp/.../crawl.log",
     "enable": "extensions" | "addon" | "none",   # how the guard is enabled (default: extensions)
     "watch_browsers": false,                     # record browser processes this process starts
     "events_file": "/tmp/.../events.jsonl",       # a line per guard_tripped, crawl_paused, crawl_resumed
     "settings": {...process settings...},
     "crawlers": [{"url": "http://127.0.0.1:PORT/", "settings": {...}, "cost": "0.5",
                   "ensure_funds": "3", "max_pages": 50,
                   "playwright": false, "include_page": false,
                   "items": false,                  # yield one item per page
                   "pipeline_cost": "0.002",        # SpendingPipeline: ensure_funds_for_item per item
                   "solve": {"api": URL, "key": KEY, "cost": "0.002"}}]}  # a paid createTask per page

and the last line of stdout is ``{"crawlers": [{"stats": ..., "signals": [...], ...}], ...}``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import threading
import time
import warnings
from decimal import Decimal
from typing import Any

import scrapy
from scrapy import signals as scrapy_signals
from scrapy.exceptions import CloseSpider

from vastcap_guard import GuardError, signals
from vastcap_guard.poller import active_pollers
from vastcap_guard.scrapy import extension, get_guard

#: (read defensively: the runner also runs against older versions of the package, to show a defect)
RESERVED_META_KEY = getattr(extension, "RESERVED_META_KEY", "_vastcap_reserved")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.timedelta)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _bind(func: Any, name: str) -> Any:
    def handler(**kw: Any) -> None:
        func(name, **kw)

    return handler


class FollowSpider(scrapy.Spider):
    """Follows every link of the local site. Options:

    - ``cost``: put ``meta["vastcap_cost"] = cost`` on every followed link (CostGuardMiddleware);
    - ``ensure_funds``: ``await get_guard(crawler).ensure_funds(ensure_funds)`` in every callback;
    - ``max_pages``: stop following links after this many pages;
    - ``playwright``: render every page through scrapy-playwright (``meta["playwright"]``);
    - ``include_page``: also ask for the Playwright page and never close it (pages left open);
    - ``stop_file``: close the spider (reason ``finished``) once this file exists (the test ends the crawl);
    - ``items``: yield one item (``{"url": ...}``) per page;
    - ``solve``: for every page, a paid ``createTask`` POST to the sandbox (``meta["vastcap_cost"]``,
      its own download slot ``vastcap-api``), then one ``getTaskResult``.
    """

    name = "follow"

    def __init__(self, url: str, cost: str | None = None, ensure_funds: str | None = None,
                 max_pages: int | None = None, record: dict[str, Any] | None = None,
                 playwright: bool = False, include_page: bool = False, stop_file: str | None = None,
                 items: bool = False, solve: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.items = items
        self.solve = solve
        self.stop_file = stop_file
        self.playwright = playwright
        self.include_page = include_page
        self.open_pages: list[Any] = []
        self.url = url
        self.cost = cost
        self.ensure = ensure_funds
        self.max_pages = max_pages
        self.pages = 0
        self.record = record if record is not None else {}

    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"vastcap_cost": self.cost} if self.cost is not None else {}
        if self.playwright:
            meta["playwright"] = True
            if self.include_page:
                meta["playwright_include_page"] = True
        return meta

    async def start(self) -> Any:
        meta = self._meta()
        meta.pop("vastcap_cost", None)
        yield scrapy.Request(self.url, callback=self.parse, meta=meta)

    async def parse(self, response: Any) -> Any:
        self.pages += 1
        page = response.meta.get("playwright_page")
        if page is not None:
            self.open_pages.append(page)  # deliberately never closed
        if self.ensure is not None:
            guard = get_guard(self.crawler)
            assert guard is not None
            try:
                projected = await guard.ensure_funds(self.ensure)
            except GuardError as exc:
                self.record.setdefault("ensure_funds_errors", []).append(exc.reason)
                return
            self.record.setdefault("ensure_funds", []).append(str(projected))
        if self.items:
            yield {"url": response.url}
        if self.solve is not None:
            yield self._api("createTask", {"task": {"type": "RecaptchaV2TaskProxyless", "websiteURL": response.url,
                                                     "websiteKey": "k"}},
                            self.on_task, meta={"vastcap_cost": self.solve["cost"]})
        if self.max_pages is not None and self.pages >= self.max_pages:
            return
        if self.stop_file is not None and os.path.exists(self.stop_file):
            raise CloseSpider("finished")  # the test has seen enough: end now, as a finished crawl
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse, meta=self._meta())


    def _api(self, method: str, body: dict[str, Any], callback: Any, meta: dict[str, Any]) -> scrapy.Request:
        assert self.solve is not None
        return scrapy.Request(f"{self.solve['api']}/{method}", method="POST", callback=callback,
                              errback=self.on_api_error, dont_filter=True,
                              body=json.dumps({"clientKey": self.solve["key"], **body}),
                              meta={"download_slot": "vastcap-api", **meta})

    def on_task(self, response: Any) -> Any:
        self.record["tasks_created"] = self.record.get("tasks_created", 0) + 1
        task = json.loads(response.text)
        if "taskId" in task:
            yield self._api("getTaskResult", {"taskId": task["taskId"]}, self.on_result, meta={})

    def on_result(self, response: Any) -> None:
        if json.loads(response.text).get("status") == "ready":
            self.record["tasks_solved"] = self.record.get("tasks_solved", 0) + 1

    def on_api_error(self, failure: Any) -> None:
        request = failure.request
        kind = type(failure.value).__name__
        self.record.setdefault("api_errors", []).append([request.url.rsplit("/", 1)[-1], kind])
        assert RESERVED_META_KEY not in request.meta, "a failed paid request still holds its reservation"


class SpendingPipeline:
    """Pays ``pipeline_cost`` for every item through ``ensure_funds_for_item`` (GuardDropItem)."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> SpendingPipeline:
        return cls(crawler)

    async def process_item(self, item: Any, spider: Any = None) -> Any:
        cost = self.crawler.settings.get("TEST_PIPELINE_COST")
        guard = get_guard(self.crawler)
        if cost is not None and guard is not None:
            await guard.ensure_funds_for_item(cost)
        return item


def committed(crawler: Any) -> dict[str, int]:
    """Requests each downloader slot has let out (on the wire, or popped and about to be) and
    still holds in its queue, right now."""
    engine = getattr(crawler, "engine", None)
    slots = getattr(getattr(engine, "downloader", None), "slots", {}) or {}
    out: dict[str, int] = {}
    for key, slot in slots.items():
        out[key] = len(slot.active) - len(slot.queue)
        out[f"{key}:queued"] = len(slot.queue)
    return out


def _descendants(root: int) -> dict[int, str]:
    """Living descendant processes of ``root``: pid -> command line (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields and fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found: dict[int, str] = {}
    for pid in parents:
        p = pid
        while p in parents and p != root and p > 1:
            p = parents[p]
        if p == root and pid != root:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    found[pid] = fh.read().replace(b"\0", b" ").decode(errors="replace")[:200]
            except OSError:
                continue
    return found


def browser_processes(root: int) -> dict[int, str]:
    return {pid: cmd for pid, cmd in _descendants(root).items() if "chrom" in cmd.lower()}


class BrowserWatch(threading.Thread):
    """Sample this process's browser descendants while the crawl runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="browser-watch")
        self.seen: dict[int, str] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.seen.update(browser_processes(os.getpid()))
            self.stopped.wait(0.05)


def main() -> None:
    with open(sys.argv[1]) as fh:
        config = json.load(fh)
    mode = config.get("mode", "asyncio")
    settings: dict[str, Any] = {
        "LOG_LEVEL": "DEBUG",
        "LOG_FILE": config["log_file"],
        "TELNETCONSOLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "RETRY_ENABLED": False,
    }
    enable = config.get("enable", "extensions")
    events_file = config.get("events_file")
    if enable == "extensions":
        settings["EXTENSIONS"] = {"vastcap_guard.scrapy.BalanceGuard": 500}
        settings["DOWNLOADER_MIDDLEWARES"] = {"vastcap_guard.scrapy.CostGuardMiddleware": 50}
    elif enable == "addon":
        settings["ADDONS"] = {"vastcap_guard.scrapy.Addon": 500}
    if mode == "twisted":
        settings["TWISTED_REACTOR"] = "twisted.internet.epollreactor.EPollReactor"
    elif mode == "reactorless":
        settings["TWISTED_REACTOR_ENABLED"] = False
    settings.update(config.get("settings", {}))

    caught: list[warnings.WarningMessage] = []
    warnings.simplefilter("always")
    warnings.simplefilter("ignore", ResourceWarning)
    showwarning = warnings.showwarning

    def record_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                       line: Any = None) -> None:
        caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
        showwarning(message, category, filename, lineno, file, line)

    warnings.showwarning = record_warning

    try:
        from scrapy.crawler import AsyncCrawlerProcess
    except ImportError:  # Scrapy 2.13
        AsyncCrawlerProcess = None
    from scrapy.crawler import CrawlerProcess

    if mode == "twisted" or AsyncCrawlerProcess is None:
        process: Any = CrawlerProcess(settings)
    else:
        process = AsyncCrawlerProcess(settings)

    results: list[dict[str, Any]] = []
    for i, spec in enumerate(config["crawlers"]):
        record: dict[str, Any] = {"signals": [], "index": i}
        results.append(record)
        custom = dict(spec.get("settings", {}))
        if spec.get("pipeline_cost") is not None:
            custom["ITEM_PIPELINES"] = {f"{__name__}.SpendingPipeline": 300}
            custom["TEST_PIPELINE_COST"] = spec["pipeline_cost"]
        spidercls = type(f"Spider{i}", (FollowSpider,), {"name": f"follow{i}", "custom_settings": custom})
        crawler = process.create_crawler(spidercls)
        record["crawler"] = crawler

        def on_signal(name: str, record: dict[str, Any] = record, crawler: Any = crawler, **kw: Any) -> None:
            entry = {"signal": name, "main_thread": threading.current_thread() is threading.main_thread(),
                     "at": time.time()}
            if name in ("guard_tripped", "crawl_paused", "crawl_resumed"):
                # the decision: what the downloader had already let out, and still held, at this moment
                entry["committed"] = committed(crawler)
                if events_file:  # for the test driving the crawl from outside, as it happens
                    with open(events_file, "a") as fh:
                        fh.write(json.dumps({"crawler": record["index"], "signal": name, "at": entry["at"]}) + "\n")
            if name == "balance_checked" and crawler.stats is not None:
                # the forecast stats as this check left them (None: absent)
                entry["stats"] = {k: crawler.stats.get_value(f"vastcap/{k}")
                                  for k in ("spend_per_minute", "minutes_left")}
            for k, v in kw.items():
                if k in {"reason", "balance", "threshold", "at_start", "paused_seconds"}:
                    entry[k] = _jsonable(v)
                elif k == "reading":
                    entry["ok"] = v.ok
                    entry["balance"] = _jsonable(v.balance)
                elif k == "error":
                    entry["error_type"] = type(v).__name__
                    entry["message"] = str(v)
                elif k == "forecast":
                    entry["state"] = v.state
                    entry["spend_per_minute"] = _jsonable(v.spend_per_minute)
                    entry["minutes_left"] = _jsonable(v.minutes_left)
                elif k == "guard":
                    entry["has_guard"] = v is not None
            record["signals"].append(entry)

        for name in ("balance_checked", "balance_low", "balance_forecast", "guard_tripped", "crawl_paused",
                     "crawl_resumed"):
            signal = getattr(signals, name, None)
            if signal is not None:  # (an older version of the package has fewer)
                crawler.signals.connect(_bind(on_signal, name), signal=signal, weak=False)

        def seen_request(request: Any, record: dict[str, Any] = record, **kw: Any) -> None:
            record["scheduled"] = record.get("scheduled", 0) + 1

        crawler.signals.connect(seen_request, signal=scrapy_signals.request_reached_downloader, weak=False)
        process.crawl(crawler, url=spec["url"], cost=spec.get("cost"), ensure_funds=spec.get("ensure_funds"),
                      max_pages=spec.get("max_pages"), record=record,
                      playwright=spec.get("playwright", False), include_page=spec.get("include_page", False),
                      stop_file=spec.get("stop_file"), items=spec.get("items", False), solve=spec.get("solve"))

    watch = BrowserWatch() if config.get("watch_browsers") else None
    if watch is not None:
        watch.start()
    process.start()
    if watch is not None:
        watch.stopped.set()
        watch.join()

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        t.name.startswith("vastcap-guard-poller") for t in threading.enumerate()
    ):
        time.sleep(0.05)
    out: dict[str, Any] = {"crawlers": [], "scrapy": scrapy.__version__, "mode": mode}
    for record in results:
        crawler = record.pop("crawler")
        record["stats"] = _jsonable(crawler.stats.get_stats())
        guard = get_guard(crawler)
        record["guard"] = guard is not None
        if guard is not None:
            record["pending_spend"] = str(guard.guard.pending_spend)
        out["crawlers"].append(_jsonable(record))
    out["poller_threads"] = [t.name for t in threading.enumerate() if t.name.startswith("vastcap-guard-poller")]
    out["active_pollers"] = active_pollers()
    if watch is not None:
        out["browsers_seen"] = {str(pid): cmd for pid, cmd in watch.seen.items()}
        out["browsers_left"] = {str(pid): cmd for pid, cmd in browser_processes(os.getpid()).items()}
    out["warnings"] = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    logging.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
