"""One benchmark Selenium script: headless Chromium through Debian's chromedriver, one JSON line out.

Usage: ``python bench/sel_worker.py CONFIG_JSON`` (started by ``bench/run.py``, not by hand).

CONFIG keys: ``mode``, ``key``, ``api_url``, ``interval``, ``site_url``, ``chromium``,
``chromedriver``, and per mode:

- ``"run"``: load ``pages`` pages of the local site, under ``vastcap_guard.selenium.guard``
  (``guard: true``) or not. Reports the page loop's duration and CPU time (this process, every
  thread: the script, the guard's poller) and the whole script's duration (guard entry, driver
  start, pages, quit, guard exit);
- ``"stop"``: load pages of the local site under the guard until it stops the script (the
  orchestrator empties the account); ``hang_url`` instead loads one page that never finishes.
  Reports when the guard decided (its ERROR record) and when the script's pending call raised.

Times are ``time.time()``: the orchestrator on the same machine compares them with its own.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from vastcap_guard import GuardError
from vastcap_guard.selenium import guard

ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


class StopRecord(logging.Handler):
    """The time of the guard's one ERROR line: the moment it decided to stop."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.at is None:
            self.at = record.created


def new_driver(cfg: dict[str, Any]) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = cfg["chromium"]
    for arg in ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(cfg["chromedriver"]), options=options)


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def script() -> None:
        driver = new_driver(cfg)
        try:
            t, cpu = time.perf_counter(), time.process_time()
            for n in range(cfg["pages"]):
                driver.get(f"{cfg['site_url']}page/{n}")
            out["loop"] = time.perf_counter() - t
            out["cpu"] = time.process_time() - cpu  # this process (all its threads), not the browser
        finally:
            driver.quit()

    t0 = time.perf_counter()
    if cfg["guard"]:
        with guard(cfg["key"], api_url=cfg["api_url"], interval=cfg["interval"]) as g:
            script()
        out["checks"] = g.snapshot()["checks"]
    else:
        script()
    out["total"] = time.perf_counter() - t0
    return out


def stop(cfg: dict[str, Any]) -> dict[str, Any]:
    record = StopRecord()
    logging.getLogger("vastcap_guard").addHandler(record)
    out: dict[str, Any] = {"pages": 0}
    try:
        with guard(cfg["key"], api_url=cfg["api_url"], interval=cfg["interval"]):
            driver = new_driver(cfg)
            driver.set_page_load_timeout(60)
            if cfg.get("hang_url"):
                driver.get(cfg["hang_url"])  # never finishes: only the guard ends it
            n = 0
            while True:
                driver.get(f"{cfg['site_url']}page/{n % 1000}")
                out["pages"] += 1
                n += 1
    except GuardError as exc:
        out["raised_at"] = time.time()
        out["reason"] = exc.reason
        out["cause"] = type(exc.__cause__).__name__ if exc.__cause__ is not None else None
    out["decided_at"] = record.at
    return out


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    result = run(config) if config["mode"] == "run" else stop(config)
    print(json.dumps(result))
