"""Run real crawls through ``runner.py`` in a subprocess (any reactor mode) and check the basics.

Every crawl is checked for what must hold in all of them: the runner exited cleanly, the key is
nowhere in the DEBUG-level log, no traceback was logged, no poller thread was left behind, and no
ScrapyDeprecationWarning was emitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import scrapy

from vastcap_guard.scrapy._compat import scrapy_version

T = TypeVar("T")

RUNNER = Path(__file__).with_name("runner.py")

#: a distinctive key, so that finding it in a log cannot be a coincidence
KEY = "vc_live_S3CR3T_d0n0tl0g_7f3a9c21"
MASKED = "vc_…9c21"

SCRAPY = scrapy_version(scrapy.__version__)
MODES = ["asyncio", "twisted", "reactorless"]


def mode_supported(mode: str) -> bool:
    return mode != "reactorless" or SCRAPY >= (2, 15)


@dataclass
class Crawl:
    out: dict[str, Any]
    log: str
    stderr: str

    def crawler(self, i: int = 0) -> dict[str, Any]:
        return self.out["crawlers"][i]

    def stats(self, i: int = 0) -> dict[str, Any]:
        return self.crawler(i)["stats"]

    @property
    def reason(self) -> str:
        return str(self.stats()["finish_reason"])

    def signals(self, name: str, i: int = 0) -> list[dict[str, Any]]:
        return [s for s in self.crawler(i)["signals"] if s["signal"] == name]

    def lines(self, level: str, logger: str = "vastcap_guard") -> list[str]:
        return [line for line in self.log.splitlines() if f"[{logger}" in line and f"] {level}:" in line]


def run_crawl(
    tmp_path: Path,
    crawlers: list[dict[str, Any]],
    settings: dict[str, Any] | None = None,
    *,
    mode: str = "asyncio",
    during: Callable[[subprocess.Popen[str]], None] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 90,
    key: str = KEY,
    enable: str = "extensions",
    watch_browsers: bool = False,
    allow_deprecations: tuple[str, ...] = (),
    log_filter: Callable[[str], str] | None = None,
    events: Path | None = None,
) -> Crawl:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_file = tmp_path / f"crawl-{time.monotonic_ns()}.log"
    config = {"mode": mode, "log_file": str(log_file), "settings": settings or {}, "crawlers": crawlers,
              "enable": enable, "watch_browsers": watch_browsers,
              "events_file": str(events) if events is not None else None}
    config_file = tmp_path / f"config-{time.monotonic_ns()}.json"
    config_file.write_text(json.dumps(config))
    proc_env = dict(os.environ if env is None else env)
    proc_env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=proc_env,
    )
    try:
        if during is not None:
            during(proc)
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    log = log_file.read_text() if log_file.exists() else ""
    assert proc.returncode == 0, f"runner failed ({proc.returncode}):\n{stderr[-4000:]}\n{log[-4000:]}"
    out = json.loads(stdout.strip().splitlines()[-1])
    crawl = Crawl(out, log, stderr)
    # what must hold in every crawl
    assert key not in log, "the API key appeared in the crawl log"
    assert key not in stdout and key not in stderr
    # the caller may cut out what a third-party component is known to log (a stock Spidermon
    # monitor's failure comes with a traceback)
    checked = log_filter(log) if log_filter is not None else log
    assert "Traceback" not in checked, checked[-4000:]
    assert out["poller_threads"] == [] and out["active_pollers"] == 0, "a poller thread was left behind"
    # Scrapy routes warnings to its log (logging.captureWarnings); the runner records the others
    deprecations = [w for w in out["warnings"] if "ScrapyDeprecationWarning" in w or "vastcap_guard" in w]
    deprecations += [line for line in checked.splitlines() if "DeprecationWarning" in line]
    # a third-party component's own deprecations (e.g. Spidermon's), named by the caller
    deprecations = [d for d in deprecations if not any(a in d for a in allow_deprecations)]
    assert deprecations == [], deprecations
    return crawl


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str] | None = None, timeout: float = 30) -> None:
    """Wait (generously) until ``condition()``; fail if the crawl ended first or time ran out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("the crawl ended before the condition was met")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        time.sleep(0.02)


def in_parallel(jobs: dict[str, Callable[[], T]], workers: int = 6) -> dict[str, Callable[[], T]]:
    """Run every job at once (each drives its own crawl subprocess, servers and timers) and return,
    per name, a function that gives the job's result or raises what the job raised. Crawls mostly
    wait (on the site, a pause, the sandbox), so several share two cores well."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        for future in futures.values():
            future.exception()  # wait for all

    def result_of(name: str) -> Callable[[], T]:
        return futures[name].result

    return {name: result_of(name) for name in futures}


def requests_after(times: list[float], at: float) -> int:
    """How many of ``times`` (a server's request log) came after the decision taken ``at``."""
    return sum(1 for t in times if t > at)


def events(path: Path, signal: str, crawler: int | None = None) -> list[float]:
    """When ``signal`` (guard_tripped, crawl_paused, crawl_resumed) was sent, from a running crawl's
    ``events`` file (see :func:`run_crawl`)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # a line being written
            continue
        if event["signal"] == signal and (crawler is None or event["crawler"] == crawler):
            out.append(float(event["at"]))
    return out
