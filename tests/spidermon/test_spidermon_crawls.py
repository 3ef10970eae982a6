"""Real crawls with Spidermon and vastcap-guard enabled as docs/operations.md says, against a local
site and the VastCap sandbox on 127.0.0.1. Each crawl runs in a subprocess (``tests/scrapy/runner.py``);
the assertions read Spidermon's own report from the crawl log (which monitors passed, failed or were
skipped, and the messages) and, through a recording action, the ``result`` Spidermon hands to its
notification actions.

Run with ``python -m pytest -p no:twisted tests/spidermon``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("spidermon")

from scrapy_crawl import KEY, MASKED, MODES, mode_supported, wait_for
from sm_support import (
    BALANCE,
    CLOSE_SUITE,
    STOCK_FINISH,
    STOCK_FINISH_REASON_SUITE,
    STOP,
    run_spidermon_crawl,
    spidermon_settings,
)

from vastcap_guard import REASONS
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}) as sandbox:
        yield sandbox


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=40) as s:
        yield s


@pytest.fixture
def slow_site() -> Iterator[LocalSite]:
    """One request at a time (with ``CONCURRENT_REQUESTS = 1``), a few seconds in all."""
    with LocalSite(pages=300, delay=0.03) as s:
        yield s


def modes() -> list[Any]:
    return [pytest.param(m, marks=pytest.mark.skipif(not mode_supported(m), reason="needs Scrapy 2.15+"))
            for m in MODES]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- refused at start ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", modes())
def test_refused_start_fails_the_close_suite_with_what_to_do(tmp_path: Path, sb: Sandbox, site: LocalSite,
                                                             mode: str) -> None:
    sb.set_balance(KEY, 0)
    crawl, runs = run_spidermon_crawl(
        tmp_path, [{"url": site.url}],
        spidermon_settings(sb, close=[CLOSE_SUITE, STOCK_FINISH_REASON_SUITE], VASTCAP_WARN_BALANCE=1),
        mode=mode,
    )  # run_crawl also checks: no traceback in our failure blocks (none chained from the CloseSpider)
    assert crawl.reason == "vastcap_low_balance"
    assert site.request_count == 0  # Spidermon changes nothing about the refusal
    ours, stock = runs
    assert ours.monitors.statuses == {STOP: "FAIL", BALANCE: "FAIL"}
    assert ours.monitors.summary == "FAILED (failures=2)"
    stop = ours.message(STOP)
    assert stop.startswith("vastcap-guard stopped the crawl: vastcap_low_balance. Top up the VastCap account, "
                           "then run the crawl again. Balance at close: $0.00.")
    assert "below the minimum of $0.001" in stop  # the guard's own message, as details
    assert stop.endswith(f"(API key {MASKED})")
    balance = ours.message(BALANCE)
    assert balance.startswith("The VastCap balance at close, $0.00, is below VASTCAP_WARN_BALANCE $1.00")
    assert "Top up the VastCap account before the next crawl" in balance
    # Spidermon's stock FinishReasonMonitor fails on the guard's reason too (docs say so)
    assert stock.monitors.statuses == {STOCK_FINISH: "FAIL"}
    assert "vastcap_low_balance" in stock.monitors.errors[STOCK_FINISH]


def test_expected_finish_reasons_leave_guard_stops_to_the_vastcap_suite(tmp_path: Path, sb: Sandbox,
                                                                        site: LocalSite) -> None:
    """The docs' recipe: SPIDERMON_EXPECTED_FINISH_REASONS = ["finished", *REASONS]."""
    sb.set_balance(KEY, 0)
    crawl, runs = run_spidermon_crawl(
        tmp_path, [{"url": site.url}],
        spidermon_settings(sb, close=[CLOSE_SUITE, STOCK_FINISH_REASON_SUITE],
                           SPIDERMON_EXPECTED_FINISH_REASONS=["finished", *REASONS]),
    )
    assert crawl.reason == "vastcap_low_balance"
    ours, stock = runs
    assert stock.monitors.statuses == {STOCK_FINISH: "OK"}
    assert ours.monitors.statuses[STOP] == "FAIL"


def test_refused_start_without_a_balance_skips_the_balance_monitor(tmp_path: Path, sb: Sandbox,
                                                                     site: LocalSite) -> None:
    """An unknown key: no balance was ever read, so there is no vastcap/balance stat."""
    crawl, runs = run_spidermon_crawl(
        tmp_path, [{"url": site.url}],
        spidermon_settings(sb, VASTCAP_API_KEY="vc_unknown_key_1234abcd", VASTCAP_WARN_BALANCE=1),
        key="vc_unknown_key_1234abcd",
    )
    assert crawl.reason == "vastcap_invalid_key"
    assert "vastcap/balance" not in crawl.stats()
    (run,) = runs
    assert run.monitors.statuses == {STOP: "FAIL", BALANCE: "SKIPPED"}
    assert run.monitors.summary == "FAILED (failures=1, skipped=1)"
    assert run.message(STOP).startswith("vastcap-guard stopped the crawl: vastcap_invalid_key. VastCap does "
                                        "not know the API key")
    assert "No balance was read." in run.message(STOP)
    assert run.monitors.skipped[BALANCE].startswith("No VastCap balance was read in this crawl")
    assert run.monitors.errors.keys() == {STOP}  # a skip, not an error


# -- stopped while running ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", modes())
def test_mid_crawl_stop_fails_the_close_suite(tmp_path: Path, sb: Sandbox, slow_site: LocalSite, mode: str) -> None:
    record = tmp_path / "record.jsonl"

    def drain(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 5, proc)
        sb.set_balance(KEY, 0)

    crawl, runs = run_spidermon_crawl(
        tmp_path, [{"url": slow_site.url}],
        spidermon_settings(sb, close=["sm_suites.RecordedVastcapSuite"], VASTCAP_WARN_BALANCE=1,
                           CONCURRENT_REQUESTS=1, SM_TEST_RECORD_FILE=str(record)),
        during=drain, mode=mode,
    )
    assert crawl.reason == "vastcap_low_balance"
    assert slow_site.request_count < 300
    (run,) = runs
    assert run.monitors.statuses == {STOP: "FAIL", BALANCE: "FAIL"}
    stop = run.message(STOP)
    assert stop.startswith("vastcap-guard stopped the crawl: vastcap_low_balance. Top up the VastCap account, "
                           "then run the crawl again. Balance at close: $0.00 (at start $10.00, spent $10.00 "
                           "during the crawl).")
    # the notification actions get the same verdicts and messages: the failed-actions step ran
    assert run.steps["FAILED ACTIONS"].statuses == {"RecordOnFailure": "OK"}
    assert run.steps["PASSED ACTIONS"].statuses == {}  # Spidermon logs no line for a skipped action
    (entry,) = records(record)
    assert entry["action"] == "RecordOnFailure"
    assert entry["failed"] == [STOP, BALANCE]
    reasons = {m["name"]: m["reason"] for m in entry["monitors"]}
    assert reasons[STOP] == stop
    assert KEY not in record.read_text()


# -- a funded crawl -----------------------------------------------------------------------------
def test_funded_crawl_passes_the_close_suite(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    record = tmp_path / "record.jsonl"
    crawl, runs = run_spidermon_crawl(
        tmp_path, [{"url": site.url}],
        spidermon_settings(sb, close=["sm_suites.RecordedVastcapSuite", STOCK_FINISH_REASON_SUITE],
                           VASTCAP_WARN_BALANCE=1, SM_TEST_RECORD_FILE=str(record)),
    )
    assert crawl.reason == "finished"
    assert site.request_count == 41
    ours, stock = runs
    assert ours.monitors.statuses == {STOP: "OK", BALANCE: "OK"}  # $10 >= $1: checked, not skipped
    assert ours.monitors.summary == "OK"
    assert ours.monitors.errors == {}
    assert stock.monitors.statuses == {STOCK_FINISH: "OK"}
    assert ours.steps["PASSED ACTIONS"].statuses == {"RecordOnPass": "OK"}
    assert ours.steps["FAILED ACTIONS"].statuses == {}
    (entry,) = records(record)
    assert entry["action"] == "RecordOnPass" and entry["failed"] == []


def test_low_balance_at_close_fails_only_the_balance_monitor(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    """The crawl finished, but the money left is below VASTCAP_WARN_BALANCE."""
    sb.set_balance(KEY, "0.40")
    crawl, runs = run_spidermon_crawl(tmp_path, [{"url": site.url}], spidermon_settings(sb, VASTCAP_WARN_BALANCE="0.5"))
    assert crawl.reason == "finished"
    (run,) = runs
    assert run.monitors.statuses == {STOP: "OK", BALANCE: "FAIL"}
    assert run.message(BALANCE) == (
        f"The VastCap balance at close, $0.40, is below VASTCAP_WARN_BALANCE $0.50 (API key {MASKED}). "
        "Top up the VastCap account before the next crawl: crawls stop below $0.001 (VASTCAP_MIN_BALANCE)."
    )


def test_without_thresholds_the_balance_monitor_is_skipped(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    crawl, runs = run_spidermon_crawl(tmp_path, [{"url": site.url}], spidermon_settings(sb))
    assert crawl.reason == "finished"
    (run,) = runs
    assert run.monitors.statuses == {STOP: "OK", BALANCE: "SKIPPED"}
    assert run.monitors.skipped[BALANCE] == "VASTCAP_WARN_BALANCE is not set: there is no balance to compare with."
    assert run.monitors.summary == "OK (skipped=1)"


def test_guard_disabled_no_stats_no_crash(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    crawl, runs = run_spidermon_crawl(
        tmp_path, [{"url": site.url}], spidermon_settings(sb, VASTCAP_ENABLED=False, VASTCAP_WARN_BALANCE=1)
    )
    assert crawl.reason == "finished"
    assert not any(k.startswith("vastcap/") for k in crawl.stats())
    (run,) = runs
    assert run.monitors.statuses == {STOP: "OK", BALANCE: "SKIPPED"}
    assert sb.call_count("getBalance") == 0
