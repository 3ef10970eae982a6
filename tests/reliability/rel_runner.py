"""Run many guarded Scrapy crawls one after another in this process, in one reactor mode.

Used by the reliability tests as ``python rel_runner.py CONFIG.json``. Starting Scrapy costs about
a second, so one subprocess runs a whole batch of short crawls; each crawl gets its own sandbox
(VastCap API) and local site, both served from this process on 127.0.0.1, its own captured log
(every logger, DEBUG included) and its own result. CONFIG::

    {"mode": "asyncio" | "reactorless" | "twisted",
     "cases": [{"id": "...",
                "settings": {...},          # crawler settings (VASTCAP_API_URL/KEY are filled in)
                "pages": 100000, "delay": 0.02,   # the local site (effectively endless by default)
                "balance": "10",            # the account's balance in the sandbox
                "fault": {"kind": "status", "status": 500} | {"kind": "refused"} | None,
                "when": "preflight" | "midrun" | "preflight_once" | "never",
                "set_balance_midrun": "-5"}]}

``when``: ``preflight``: the fault is there from the start; ``midrun``: it is injected right after
the first (pre-flight) balance check; ``preflight_once``: there at the start and removed right
after the first check. ``{"kind": "refused"}`` is an API URL nobody listens on (mid-run: the
sandbox is stopped). The last line of stdout is ``{"cases": {id: result}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import traceback
from decimal import Decimal
from typing import Any

import scrapy
from scrapy.utils.log import configure_logging

from vastcap_guard import signals
from vastcap_guard.poller import active_pollers
from vastcap_guard.sandbox import Sandbox, free_port
from vastcap_guard.scrapy import get_guard
from vastcap_guard.site import LocalSite

KEY_PLACEHOLDER = "<KEY>"
URL_PLACEHOLDER = "<API_URL>"


class CaptureHandler(logging.Handler):
    """Every log record of the current case, formatted the way Scrapy formats its log file."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s"))
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as exc:  # a broken log call is itself a finding
            text = f"<unformattable log record {record.msg!r}: {exc!r}>"
        self.lines.append(text)
        self.records.append({"name": record.name, "level": record.levelname,
                             "exc_info": bool(record.exc_info), "text": text})


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Decimal) else repr(value)


class FollowSpider(scrapy.Spider):
    """Follows every link of the local site (with the default site: forever, until stopped)."""

    name = "follow"

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.url = url

    async def start(self) -> Any:
        yield scrapy.Request(self.url, callback=self.parse)

    def parse(self, response: Any) -> Any:
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)


class Case:
    def __init__(self, spec: dict[str, Any], key: str, capture: CaptureHandler) -> None:
        self.spec = spec
        self.key = key
        self.capture = capture
        self.signals: list[dict[str, Any]] = []
        self.tripped_at: float | None = None
        self.site = LocalSite(pages=spec.get("pages", 100000), delay=spec.get("delay", 0.02)).start()
        fault = spec.get("fault") or {}
        self.refused = fault.get("kind") == "refused"
        self.when = spec.get("when", "never")
        port = free_port() if self.refused and self.when in ("preflight", "preflight_once") else 0
        self.sandbox = Sandbox({key: spec.get("balance", "10")}, port=port)
        if not (self.refused and self.when in ("preflight", "preflight_once")):
            self.sandbox.start()
        self.api_url = f"http://127.0.0.1:{port}/api/solver" if port else self.sandbox.url
        if fault and not self.refused and self.when in ("preflight", "preflight_once"):
            self._inject()
        self._checks_seen = 0

    def _inject(self) -> None:
        fault = dict(self.spec["fault"])
        kind = fault.pop("kind")
        if kind == "refused":
            # stop() also cuts kept-alive connections, so the next attempt is refused
            threading.Thread(target=self.sandbox.stop, daemon=True).start()
        else:
            self.sandbox.fault("getBalance", kind, **fault)

    def _clear(self) -> None:
        if self.refused:
            self.sandbox.start()
        else:
            self.sandbox.clear_faults()

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.spec.get("settings", {}).items():
            if value == KEY_PLACEHOLDER:
                value = self.key
            elif value == URL_PLACEHOLDER:
                value = self.api_url
            out[name] = value
        out.setdefault("VASTCAP_API_KEY", self.key)
        out.setdefault("VASTCAP_API_URL", self.api_url)
        return out

    def on_signal(self, name: str, **kw: Any) -> None:
        entry: dict[str, Any] = {"signal": name, "t": time.monotonic(),
                                 "main_thread": threading.current_thread() is threading.main_thread()}
        reading = kw.get("reading")
        if reading is not None:
            entry["ok"] = reading.ok
            entry["balance"] = _jsonable(reading.balance)
            if reading.error is not None:
                entry["error_type"] = type(reading.error).__name__
                entry["error_reason"] = reading.error.reason
        error = kw.get("error")
        if error is not None:
            entry["error_type"] = type(error).__name__
            entry["reason"] = kw.get("reason")
            entry["message"] = str(error)
            entry["repr"] = repr(error)
        guard = kw.get("guard")
        if guard is not None:
            entry["checks"] = guard.checks
            entry["check_failures"] = guard.check_failures
        self.signals.append(entry)
        if name == "guard_tripped" and self.tripped_at is None:
            self.tripped_at = time.monotonic()
        if name == "balance_checked":
            self._checks_seen += 1
            if self._checks_seen == 1:
                if self.when == "midrun":
                    if self.spec.get("fault"):
                        self._inject()
                    if self.spec.get("set_balance_midrun") is not None:
                        self.sandbox.set_balance(self.key, self.spec["set_balance_midrun"])
                elif self.when == "preflight_once":
                    self._clear()

    def result(self, crawler: Any, crash: str | None) -> dict[str, Any]:
        guard = get_guard(crawler)
        after = 0
        if self.tripped_at is not None:
            after = sum(1 for r in self.site.requests if r.monotonic > self.tripped_at)
        out = {
            "id": self.spec["id"],
            "crash": crash,
            "stats": _jsonable(crawler.stats.get_stats() if crawler.stats else {}),
            "signals": self.signals,
            "log": self.capture.lines,
            "records": self.capture.records,
            "site_requests": self.site.request_count,
            "site_requests_after_trip": after,
            "getbalance_calls": self.sandbox.call_count("getBalance"),
            "faulted_calls": sum(1 for c in self.sandbox.calls("getBalance") if c.fault),
            "guard_repr": repr(guard),
            "config_repr": repr(guard.config) if guard is not None else None,
            "snapshot": _jsonable(guard.guard.snapshot()) if guard is not None else None,
        }
        return out

    def close(self) -> None:
        self.sandbox.stop()
        self.site.stop()


def _wait_for_pollers(timeout: float = 8.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("vastcap-guard-poller")]
        if not left and active_pollers() == 0:
            return []
        time.sleep(0.02)
    return [t.name for t in threading.enumerate() if t.name.startswith("vastcap-guard-poller")]


def main() -> None:
    with open(sys.argv[1]) as fh:
        config = json.load(fh)
    mode = config["mode"]
    key = config["key"]
    base: dict[str, Any] = {
        "LOG_LEVEL": "DEBUG",
        "TELNETCONSOLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "EXTENSIONS": {"vastcap_guard.scrapy.BalanceGuard": 500},
        "RETRY_ENABLED": False,
        "CONCURRENT_REQUESTS": 2,
        "CLOSESPIDER_TIMEOUT": 25,  # a safety net: a guard that never stops shows up as this reason
        "VASTCAP_CHECK_INTERVAL": 0.3,
        "VASTCAP_TIMEOUT": 0.5,
    }
    if mode == "twisted":
        base["TWISTED_REACTOR"] = "twisted.internet.epollreactor.EPollReactor"
    elif mode == "reactorless":
        base["TWISTED_REACTOR_ENABLED"] = False
    else:
        base["TWISTED_REACTOR"] = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

    configure_logging(install_root_handler=False)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    capture = CaptureHandler()
    root.addHandler(capture)

    results: dict[str, Any] = {}

    async def run_all(runner: Any) -> None:
        for spec in config["cases"]:
            capture.lines, capture.records = [], []
            case = Case(spec, key, capture)
            settings = dict(base)
            settings.update(case.settings())
            spidercls = type(f"S_{len(results)}", (FollowSpider,), {"name": "follow", "custom_settings": settings})
            crawler = runner.create_crawler(spidercls)
            for name in ("balance_checked", "balance_low", "guard_tripped"):
                def handler(name: str = name, case: Case = case, **kw: Any) -> None:
                    case.on_signal(name, **kw)

                crawler.signals.connect(handler, signal=getattr(signals, name), weak=False)
            crash = None
            started = time.monotonic()
            try:
                await runner.crawl(crawler, url=case.site.url)
            except BaseException:
                crash = traceback.format_exc()
            left = _wait_for_pollers()
            result = case.result(crawler, crash)
            result["pollers_left"] = left
            result["elapsed"] = round(time.monotonic() - started, 2)
            results[spec["id"]] = result
            case.close()

    if mode == "reactorless":
        from scrapy.crawler import AsyncCrawlerRunner

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(run_all(AsyncCrawlerRunner(base)))
        loop.close()
    else:
        from scrapy.utils.reactor import install_reactor

        install_reactor(base["TWISTED_REACTOR"])
        from twisted.internet import defer
        from twisted.internet import reactor as _reactor

        reactor: Any = _reactor

        if mode == "twisted":
            from scrapy.crawler import CrawlerRunner

            runner: Any = CrawlerRunner(base)
        else:
            from scrapy.crawler import AsyncCrawlerRunner

            runner = AsyncCrawlerRunner(base)

        failure: list[str] = []

        def start() -> None:
            if mode == "twisted":
                d = defer.Deferred.fromCoroutine(run_all(runner))
            else:
                from scrapy.utils.defer import deferred_from_coro

                d = deferred_from_coro(run_all(runner))

            def done(result: Any) -> None:
                if isinstance(result, Exception) or hasattr(result, "getTraceback"):
                    failure.append(result.getTraceback() if hasattr(result, "getTraceback") else repr(result))
                reactor.stop()

            d.addBoth(done)

        reactor.callWhenRunning(start)
        reactor.run(installSignalHandlers=False)
        if failure:
            print(failure[0], file=sys.stderr)
    root.removeHandler(capture)
    print(json.dumps({"mode": mode, "scrapy": scrapy.__version__, "cases": results}))


if __name__ == "__main__":
    main()
