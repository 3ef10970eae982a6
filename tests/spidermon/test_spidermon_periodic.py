"""The periodic suite in a real crawl: money is spent through the sandbox (createTask and
getTaskResult, as a spider's captcha solving would) while the crawl runs, until vastcap-guard's
forecast says it lasts less than VASTCAP_WARN_MINUTES; Spidermon's periodic run then fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("spidermon")

from scrapy_crawl import KEY, MASKED, wait_for
from sm_support import (
    MINUTES,
    PERIODIC_SUITE,
    STOP,
    Solver,
    crawl_log,
    reports,
    run_spidermon_crawl,
    spidermon_settings,
)

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

FORECAST_FAILURE = re.compile(
    r"At the current spend of \$(?P<rate>[\d.]+)/min the VastCap balance \$[\d.]+ lasts about "
    r"(?P<minutes>[\d.]+) more minute\(s\), less than VASTCAP_WARN_MINUTES 600 \(API key "
    + re.escape(MASKED) + r"\)\. Top up the VastCap account soon: the crawl stops below \$0\.001\.$"
)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}, price="0.05") as sandbox:
        yield sandbox


def periodic_statuses(log: str) -> list[str]:
    return [r.monitors.statuses[MINUTES] for r in reports(log) if MINUTES in r.monitors.statuses]


# Spidermon runs periodic suites with Twisted's LoopingCall: not without a reactor (reactorless mode)
@pytest.mark.parametrize("mode", ["asyncio", "twisted"])
def test_periodic_monitor_fails_once_the_money_runs_out_soon(tmp_path: Path, sb: Sandbox, mode: str) -> None:
    solver = Solver(sb)
    stop_file = tmp_path / "stop"

    def spend(proc: Any) -> None:
        # a periodic run before any spending: no forecast yet, so the monitor is skipped
        wait_for(lambda: "SKIPPED" in periodic_statuses(crawl_log(tmp_path)), proc)
        solver.start()
        try:
            # spending $0.05 every 0.05 s leaves minutes, not 600: a later periodic run fails
            wait_for(lambda: "FAIL" in periodic_statuses(crawl_log(tmp_path)), proc, timeout=60)
        finally:
            solver.stop.set()
            solver.join()
        stop_file.touch()

    with LocalSite(pages=5000, delay=0.01) as site:
        crawl, runs = run_spidermon_crawl(
            tmp_path, [{"url": site.url, "stop_file": str(stop_file)}],
            spidermon_settings(sb, periodic={PERIODIC_SUITE: 0.5}, VASTCAP_WARN_MINUTES=600,
                               CONCURRENT_REQUESTS=1),
            during=spend, timeout=120, mode=mode,
        )
    assert crawl.reason == "finished"  # a forecast warns; the crawl goes on
    assert solver.solved >= 3
    periodic = [r for r in runs if MINUTES in r.monitors.statuses]
    assert all(r.monitors.statuses.keys() == {MINUTES} for r in periodic)
    first = periodic[0].monitors
    assert first.statuses[MINUTES] == "SKIPPED" and first.summary == "OK (skipped=1)"
    assert first.skipped[MINUTES].startswith("No forecast yet")
    failed = [r for r in periodic if r.monitors.statuses[MINUTES] == "FAIL"]
    assert failed
    for run in failed:
        assert run.monitors.summary == "FAILED (failures=1)"
        m = FORECAST_FAILURE.match(run.message(MINUTES))
        assert m, run.message(MINUTES)
        assert Decimal(m["rate"]) > 0 and Decimal(m["minutes"]) < 600
    # the guard's own WARNING for the same crossing, and the close suite: not stopped by the guard
    assert [w for w in crawl.lines("WARNING") if "VASTCAP_WARN_MINUTES" in w]
    (close,) = [r for r in runs if STOP in r.monitors.statuses]
    assert close.monitors.statuses[STOP] == "OK"


def test_periodic_monitor_is_skipped_without_warn_minutes(tmp_path: Path, sb: Sandbox) -> None:
    stop_file = tmp_path / "stop"

    def two_runs(proc: Any) -> None:
        wait_for(lambda: len(periodic_statuses(crawl_log(tmp_path))) >= 2, proc)
        stop_file.touch()

    with LocalSite(pages=5000, delay=0.01) as site:
        crawl, runs = run_spidermon_crawl(
            tmp_path, [{"url": site.url, "stop_file": str(stop_file)}],
            spidermon_settings(sb, periodic={PERIODIC_SUITE: 0.3}, CONCURRENT_REQUESTS=1),
            during=two_runs, timeout=120,
        )
    assert crawl.reason == "finished"
    periodic = [r.monitors for r in runs if MINUTES in r.monitors.statuses]
    assert len(periodic) >= 2
    for step in periodic:
        assert step.statuses == {MINUTES: "SKIPPED"}
        assert step.skipped[MINUTES] == "VASTCAP_WARN_MINUTES is not set: there is no time left to compare with."
