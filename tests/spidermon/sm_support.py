"""Run real crawls with Spidermon enabled (``tests/scrapy/runner.py`` in a subprocess) and read
Spidermon's own report back from the crawl log.

Spidermon logs each suite run through the spider's logger, every line prefixed ``[Spidermon] ``::

    [follow0] INFO: [Spidermon] ------------------------------ MONITORS ------------------------------
    [follow0] INFO: [Spidermon] VastCap stop/The crawl was not stopped by vastcap-guard... FAIL
    [follow0] INFO: [Spidermon] VastCap balance/The balance is at least VASTCAP_WARN_BALANCE... SKIPPED (why)
    [follow0] ERROR: [Spidermon]
    ======================================================================
    FAIL: VastCap stop/The crawl was not stopped by vastcap-guard
    ----------------------------------------------------------------------
    AssertionError: vastcap-guard stopped the crawl: ...
    [follow0] INFO: [Spidermon] 2 monitors in 0.001s
    [follow0] INFO: [Spidermon] FAILED (failures=1)
    [follow0] INFO: [Spidermon] -------------------------- FINISHED ACTIONS --------------------------
    ...
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from scrapy_crawl import KEY, Crawl, run_crawl  # tests/scrapy: on the path through conftest.py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SPIDERMON_EXTENSION = "spidermon.contrib.scrapy.extensions.Spidermon"
CLOSE_SUITE = "vastcap_guard.spidermon.VastcapMonitorSuite"
PERIODIC_SUITE = "vastcap_guard.spidermon.VastcapPeriodicMonitorSuite"
STOCK_FINISH_REASON_SUITE = "sm_suites.StockFinishReasonSuite"

STOP = "VastCap stop/The crawl was not stopped by vastcap-guard"
BALANCE = "VastCap balance/The balance is at least VASTCAP_WARN_BALANCE"
MINUTES = "VastCap time left/The money lasts at least VASTCAP_WARN_MINUTES"
STOCK_FINISH = "Finish Reason Monitor/Should have the expected finished reason(s)"
STOCK_MONITORS = {STOCK_FINISH}

#: Spidermon 1.27 logs through Spider.log(), which Scrapy 2.19 deprecates: not ours to fix
SPIDERMON_DEPRECATIONS = ("Spider.log() is deprecated",)

_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[([^\]]+)\] (\w+): ", re.M)
_ITEM = re.compile(r"^(?P<name>.+)\.\.\. (?P<status>OK|FAIL|SKIPPED|ERROR)(?: \((?P<reason>.*)\))?$", re.S)
_TITLE = re.compile(r"^-+ (?P<step>[A-Z ]+?) -+$")
_SUMMARY = re.compile(r"^(?P<verdict>OK|FAILED)(?: \((?P<infos>[^)]*)\))?$")
_FAILURE = re.compile(r"^\s*=+\n(?P<status>FAIL|ERROR): (?P<name>.+?)\n-+\n(?P<error>.*)$", re.S)


@dataclass
class Step:
    """One step of one Spidermon run: MONITORS, FINISHED ACTIONS, PASSED ACTIONS or FAILED ACTIONS."""

    name: str
    statuses: dict[str, str] = field(default_factory=dict)  # item name -> OK / FAIL / SKIPPED / ERROR
    skipped: dict[str, str] = field(default_factory=dict)  # item name -> why
    errors: dict[str, str] = field(default_factory=dict)  # item name -> the error text
    summary: str = ""


@dataclass
class Report:
    """One run of one suite, as Spidermon logged it."""

    steps: dict[str, Step] = field(default_factory=dict)

    @property
    def monitors(self) -> Step:
        return self.steps["MONITORS"]

    def message(self, name: str) -> str:
        """The failure message of monitor ``name`` (the AssertionError's text)."""
        error = self.monitors.errors[name]
        assert error.startswith("AssertionError: "), error
        return error.removeprefix("AssertionError: ").strip()


def spidermon_records(log: str) -> list[tuple[str, str]]:
    """(level, text) of every ``[Spidermon]`` record of the log, continuation lines included."""
    starts = list(_RECORD.finditer(log))
    out = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(log)
        text = log[m.end():end].rstrip("\n")
        if text.startswith("[Spidermon] "):
            out.append((m.group(2), text.removeprefix("[Spidermon] ")))
    return out


def without_stock_failures(log: str) -> str:
    """The log without the failure blocks of Spidermon's stock monitors (they carry a traceback).

    Failure blocks of vastcap-guard's monitors stay: they must have no traceback.
    """
    starts = list(_RECORD.finditer(log))
    if not starts:
        return log
    kept = [log[: starts[0].start()]]
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(log)
        text = log[m.end():end].rstrip("\n").removeprefix("[Spidermon] ")
        failure = _FAILURE.match(text)
        if failure is None or failure.group("name") not in STOCK_MONITORS:
            kept.append(log[m.start():end])
    return "".join(kept)


def reports(log: str) -> list[Report]:
    """Spidermon's suite runs, in log order."""
    runs: list[Report] = []
    step: Step | None = None
    for _level, text in spidermon_records(log):
        if m := _TITLE.match(text):
            name = m.group("step")
            if name == "MONITORS":
                runs.append(Report())
            assert runs, f"a {name} step before any MONITORS step"
            step = runs[-1].steps[name] = Step(name)
            continue
        assert step is not None, text
        if m := _FAILURE.match(text):
            step.errors[m.group("name")] = m.group("error").strip()
        elif m := _ITEM.match(text):
            step.statuses[m.group("name")] = m.group("status")
            if m.group("reason") is not None:
                step.skipped[m.group("name")] = m.group("reason")
        elif _SUMMARY.match(text):
            step.summary = text
    return runs


def spidermon_settings(sb: Any, *, close: list[str] | None = None, periodic: dict[str, float] | None = None,
                       **extra: Any) -> dict[str, Any]:
    """The settings docs/operations.md tells users to paste, pointed at the sandbox."""
    settings: dict[str, Any] = {
        "VASTCAP_API_KEY": KEY,
        "VASTCAP_API_URL": sb.url,
        "VASTCAP_CHECK_INTERVAL": 0.3,
        "VASTCAP_TIMEOUT": 2,
        "SPIDERMON_ENABLED": True,
        "EXTENSIONS": {SPIDERMON_EXTENSION: 500},
        "SPIDERMON_SPIDER_CLOSE_MONITORS": close if close is not None else [CLOSE_SUITE],
    }
    if periodic:
        settings["SPIDERMON_PERIODIC_MONITORS"] = periodic
    settings.update(extra)
    return settings


def run_spidermon_crawl(tmp_path: Path, crawlers: list[dict[str, Any]], settings: dict[str, Any],
                        **kw: Any) -> tuple[Crawl, list[Report]]:
    """A crawl with the guard enabled by the add-on and Spidermon by ``EXTENSIONS``, as documented.

    ``tests/spidermon`` is on the subprocess's path, for the suites of ``sm_suites``.
    """
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)])
    crawl = run_crawl(tmp_path, crawlers, settings, enable="addon", env=env,
                      allow_deprecations=SPIDERMON_DEPRECATIONS, log_filter=without_stock_failures, **kw)
    return crawl, reports(crawl.log)


def crawl_log(tmp_path: Path) -> str:
    """The log of the crawl running in ``tmp_path`` so far ("" before it starts)."""
    logs = sorted(tmp_path.glob("crawl-*.log"))
    return logs[-1].read_text() if logs else ""


class Solver(threading.Thread):
    """Solve one task every ``every`` seconds through the sandbox API (the sandbox charges each)."""

    def __init__(self, sb: Any, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.sb, self.every = sb, every
        self.stop = threading.Event()
        self.solved = 0

    def run(self) -> None:
        with requests.Session() as http:
            while not self.stop.wait(self.every):
                task = http.post(f"{self.sb.url}/createTask", timeout=5, json={
                    "clientKey": KEY, "task": {"type": "RecaptchaV2TaskProxyless", "websiteURL": "http://x/",
                                               "websiteKey": "k"}}).json()
                if "taskId" not in task:
                    continue
                result = http.post(f"{self.sb.url}/getTaskResult", timeout=5,
                                   json={"clientKey": KEY, "taskId": task["taskId"]}).json()
                if result.get("status") == "ready":
                    self.solved += 1
