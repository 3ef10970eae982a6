"""The monitors on hand-made stats: each decision, each message, and no crash on missing data.

The decisions are plain functions (``vastcap_guard.spidermon.checks``); the monitors are also run
through Spidermon's own ``MonitorRunner``, so statuses and messages are Spidermon's.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("spidermon")

from scrapy import Spider
from scrapy.crawler import Crawler
from spidermon import MonitorRunner

from vastcap_guard import REASONS, LowBalanceError
from vastcap_guard.scrapy import BalanceGuard
from vastcap_guard.spidermon import (
    HINTS,
    VastcapMonitorSuite,
    VastcapPeriodicMonitorSuite,
)
from vastcap_guard.spidermon.checks import balance_outcome, minutes_left_outcome, stop_outcome

KEY = "vc_unit_S3CR3T_d0n0tl0g_0b7e11a2"
MASKED = "vc_…11a2"
STOP = "VastCap stop/The crawl was not stopped by vastcap-guard"
BALANCE = "VastCap balance/The balance is at least VASTCAP_WARN_BALANCE"
MINUTES = "VastCap time left/The money lasts at least VASTCAP_WARN_MINUTES"


def get_crawler(settings_dict: dict[str, Any]) -> Crawler:
    """A real Scrapy crawler with these settings, not crawling (works on every supported Scrapy)."""
    return Crawler(Spider, settings_dict)


def settings(**values: object) -> Any:
    return values.get


# -- the stop monitor ---------------------------------------------------------------------------
@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_guard_reason_fails_with_its_own_hint(reason: str) -> None:
    outcome = stop_outcome({"finish_reason": reason})
    assert outcome.status == "fail"
    assert outcome.message.startswith(f"vastcap-guard stopped the crawl: {reason}. {HINTS[reason]}")
    assert "No balance was read." in outcome.message


def test_hints_are_specific_and_safe_in_a_url() -> None:
    assert set(HINTS) == set(REASONS)  # a new reason needs its hint
    assert len(set(HINTS.values())) == len(HINTS)
    for hint in HINTS.values():
        # Spidermon's Telegram client puts the text in a URL without escaping it
        assert not {"#", "&", "+"} & set(hint), hint
    assert HINTS["vastcap_low_balance"] == "Top up the VastCap account, then run the crawl again."
    assert "VASTCAP_API_KEY" in HINTS["vastcap_invalid_key"]
    assert "VASTCAP_MAX_SPEND" in HINTS["vastcap_budget_exceeded"]
    assert "VASTCAP_MAX_FAILURES" in HINTS["vastcap_api_unavailable"]


@pytest.mark.parametrize("reason", ["finished", "shutdown", "closespider_timeout", "cancelled", None, 3])
def test_other_finish_reasons_pass(reason: object) -> None:
    assert stop_outcome({"finish_reason": reason}).status == "pass"
    assert stop_outcome({}).status == "pass"


def test_stop_message_with_stats_details_and_key() -> None:
    stats = {"finish_reason": "vastcap_low_balance", "vastcap/balance": 0.0005, "vastcap/balance_start": 10.0,
             "vastcap/spent": 9.9995}
    outcome = stop_outcome(stats, details="The VastCap balance is $0.0005, below the minimum.", masked_key=MASKED)
    assert outcome.message == (
        "vastcap-guard stopped the crawl: vastcap_low_balance. Top up the VastCap account, then run the crawl "
        "again. Balance at close: $0.0005 (at start $10.00, spent $9.9995 during the crawl). Details: The "
        f"VastCap balance is $0.0005, below the minimum. (API key {MASKED})"
    )


def test_unknown_guard_reason_gets_a_generic_hint() -> None:
    outcome = stop_outcome({"finish_reason": "vastcap_something_new"})
    assert outcome.status == "fail"
    assert "vastcap_something_new. See the vastcap-guard ERROR line" in outcome.message


# -- the balance monitor ------------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, "", "  "])
def test_balance_without_threshold_is_skipped(value: object) -> None:
    outcome = balance_outcome({"vastcap/balance": 0.0}, settings(VASTCAP_WARN_BALANCE=value))
    assert outcome.status == "skip" and "VASTCAP_WARN_BALANCE is not set" in outcome.message


@pytest.mark.parametrize(("balance", "threshold", "status"), [
    (0.99, "1", "fail"), (1.0, "1", "pass"), (1.01, 1, "pass"), (0.0, 0.5, "fail"), (0.3, "0.3", "pass"),
    (0.29999, 0.3, "fail"), (5, Decimal("4.99"), "pass"),
])
def test_balance_against_threshold(balance: float, threshold: object, status: str) -> None:
    outcome = balance_outcome({"vastcap/balance": balance}, settings(VASTCAP_WARN_BALANCE=threshold))
    assert outcome.status == status


def test_balance_failure_message() -> None:
    outcome = balance_outcome({"vastcap/balance": 0.4},
                              settings(VASTCAP_WARN_BALANCE="0.5", VASTCAP_MIN_BALANCE="0.1"), masked_key=MASKED)
    assert outcome.message == (
        f"The VastCap balance at close, $0.40, is below VASTCAP_WARN_BALANCE $0.50 (API key {MASKED}). Top up "
        "the VastCap account before the next crawl: crawls stop below $0.10 (VASTCAP_MIN_BALANCE)."
    )


@pytest.mark.parametrize("stats", [{}, {"vastcap/balance": None}, {"vastcap/balance": "n/a"},
                                   {"vastcap/balance": float("nan")}, {"vastcap/balance": True}])
def test_balance_without_a_reading_is_skipped(stats: dict[str, object]) -> None:
    outcome = balance_outcome(stats, settings(VASTCAP_WARN_BALANCE=1))
    assert outcome.status == "skip" and outcome.message.startswith("No VastCap balance was read")


@pytest.mark.parametrize("value", ["lots", -1, True])
def test_balance_bad_threshold_fails_naming_the_setting(value: object) -> None:
    outcome = balance_outcome({"vastcap/balance": 5.0}, settings(VASTCAP_WARN_BALANCE=value))
    assert outcome.status == "fail" and outcome.message.startswith("VASTCAP_WARN_BALANCE must be")


# -- the time-left monitor ----------------------------------------------------------------------
def test_minutes_without_threshold_is_skipped() -> None:
    outcome = minutes_left_outcome({"vastcap/minutes_left": 1.0}, settings())
    assert outcome.status == "skip" and "VASTCAP_WARN_MINUTES is not set" in outcome.message


@pytest.mark.parametrize(("minutes", "threshold", "status"), [
    (29.9, 30, "fail"), (30.0, 30, "pass"), (31, "30", "pass"), (0.5, "1.5", "fail"), (100, 99.5, "pass"),
])
def test_minutes_against_threshold(minutes: float, threshold: object, status: str) -> None:
    stats = {"vastcap/minutes_left": minutes, "vastcap/spend_per_minute": 0.01, "vastcap/balance": 1.0}
    assert minutes_left_outcome(stats, settings(VASTCAP_WARN_MINUTES=threshold)).status == status


def test_minutes_failure_message() -> None:
    stats = {"vastcap/minutes_left": 0.87, "vastcap/spend_per_minute": 0.054712345, "vastcap/balance": 0.048}
    outcome = minutes_left_outcome(stats, settings(VASTCAP_WARN_MINUTES=30), masked_key=MASKED)
    assert outcome.message == (
        "At the current spend of $0.0547/min the VastCap balance $0.048 lasts about 0.9 more minute(s), less "
        f"than VASTCAP_WARN_MINUTES 30 (API key {MASKED}). Top up the VastCap account soon: the crawl stops "
        "below $0.001."
    )


def test_minutes_unknown_forecast_is_skipped_and_no_spend_passes() -> None:
    unknown = minutes_left_outcome({"vastcap/balance": 3.0}, settings(VASTCAP_WARN_MINUTES=30))
    assert unknown.status == "skip" and unknown.message.startswith("No forecast yet")
    flat = minutes_left_outcome({"vastcap/spend_per_minute": 0.0}, settings(VASTCAP_WARN_MINUTES=30))
    assert flat.status == "pass"


@pytest.mark.parametrize("value", ["soon", 0, -5, True])
def test_minutes_bad_threshold_fails_naming_the_setting(value: object) -> None:
    outcome = minutes_left_outcome({"vastcap/minutes_left": 5.0}, settings(VASTCAP_WARN_MINUTES=value))
    assert outcome.status == "fail" and outcome.message.startswith("VASTCAP_WARN_MINUTES must be")


# -- the monitors, run by Spidermon -------------------------------------------------------------
def run_suite(suite_cls: type, stats: dict[str, object], crawler: Any = None) -> dict[str, tuple[str, str | None]]:
    result = MonitorRunner().run(suite_cls(crawler=crawler), stats=stats, crawler=crawler, spider=None)
    return {r.monitor.name: (r.status, r.reason) for r in result.monitor_results}


@pytest.mark.parametrize("crawler_settings", [None, {}, {"VASTCAP_WARN_BALANCE": 1, "VASTCAP_WARN_MINUTES": 30}])
def test_no_stats_no_crawler_no_crash(crawler_settings: dict[str, object] | None) -> None:
    """Guard off, or nothing read: the monitors pass or skip, never ERROR (no NotConfigured)."""
    crawler = get_crawler(settings_dict=crawler_settings) if crawler_settings is not None else None
    close = run_suite(VastcapMonitorSuite, {}, crawler)
    assert close[STOP] == ("OK", None)
    assert close[BALANCE][0] == "SKIPPED"
    periodic = run_suite(VastcapPeriodicMonitorSuite, {}, crawler)
    assert periodic[MINUTES][0] == "SKIPPED"


def test_suites_fail_on_hand_made_stats() -> None:
    crawler = get_crawler(settings_dict={"VASTCAP_WARN_BALANCE": "2", "VASTCAP_WARN_MINUTES": "45"})
    stats = {"finish_reason": "vastcap_budget_exceeded", "vastcap/balance": 1.5, "vastcap/minutes_left": 12.0,
             "vastcap/spend_per_minute": 0.125}
    close = run_suite(VastcapMonitorSuite, stats, crawler)
    assert close[STOP][0] == "FAIL"
    assert close[STOP][1] == stop_outcome(stats).message
    assert close[BALANCE] == ("FAIL", balance_outcome(stats, crawler.settings.get).message)
    periodic = run_suite(VastcapPeriodicMonitorSuite, stats, crawler)
    assert periodic[MINUTES] == ("FAIL", minutes_left_outcome(stats, crawler.settings.get).message)
    assert "less than VASTCAP_WARN_MINUTES 45" in periodic[MINUTES][1]


def test_stop_monitor_adds_the_guards_message_and_masks_the_key() -> None:
    crawler = get_crawler(settings_dict={"VASTCAP_API_KEY": KEY})
    ext = BalanceGuard(crawler)
    ext.guard.trip(LowBalanceError("The VastCap balance is $0.00, below the minimum of $0.001.",
                                   balance=Decimal(0), minimum=Decimal("0.001")))
    close = run_suite(VastcapMonitorSuite, {"finish_reason": "vastcap_low_balance", "vastcap/balance": 0.0},
                      crawler)
    status, message = close[STOP]
    assert status == "FAIL" and message is not None
    assert "Details: The VastCap balance is $0.00, below the minimum of $0.001." in message
    assert message.endswith(f"(API key {MASKED})")
    assert KEY not in message


def test_failure_report_has_no_traceback() -> None:
    """Spidermon logs each failure's text: ours is the message alone, not a traceback into the monitor."""
    crawler = get_crawler(settings_dict={"VASTCAP_WARN_BALANCE": 1})
    runner = MonitorRunner()
    try:
        raise RuntimeError("an exception being handled while the suite runs (Scrapy's CloseSpider)")
    except RuntimeError:
        result = runner.run(VastcapMonitorSuite(crawler=crawler), stats={"finish_reason": "vastcap_low_balance",
                            "vastcap/balance": 0.0}, crawler=crawler, spider=None)
    errors = [r.error for r in result.monitors_failed_results]
    assert len(errors) == 2
    for error in errors:
        assert "Traceback" not in error and "RuntimeError" not in error
        assert error.startswith("AssertionError: ")


def test_core_import_pulls_no_spidermon() -> None:
    code = ("import sys, vastcap_guard, vastcap_guard.scrapy, vastcap_guard.cli;"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'spidermon')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
