"""Fault matrix for the Scrapy extension: every fault the sandbox injects, at pre-flight and mid-run.

Documented outcomes (README "Failure policy", docs/scrapy.md):

- pre-flight: a failed first check stops the crawl with ``vastcap_api_unavailable`` (an unknown
  error code: ``vastcap_api_error``) and zero requests reach the site; with
  ``VASTCAP_REQUIRE_PREFLIGHT = False`` the crawl starts anyway;
- mid-run: fewer than ``VASTCAP_MAX_FAILURES`` consecutive failed checks never stop the crawl (one
  WARNING each), the next one does, with the failure's reason;
- a negative balance is a balance below the minimum: ``vastcap_low_balance`` at once, wherever;
- every time: one clear ERROR line for the stop, no traceback anywhere in the DEBUG-level log.

The crawls run in background subprocesses (``rel_runner.py``, one per reactor mode, started by
``conftest.py``); each test checks one crawl's recorded result.
"""

from __future__ import annotations

from typing import Any

import pytest
from rel_support import (
    BALANCE_FAULTS,
    FAULT_NAMES,
    KEY,
    MIDRUN_MAX_FAILURES,
    SCRAPY_REACTORLESS,
    TWISTED_SUBSET,
    Batches,
    assert_clear_line,
    assert_no_traceback,
    expected_reason,
    guard_lines,
    lines_at,
)

MODES = ["asyncio", "reactorless"]


def _params(phase: str) -> list[Any]:
    params = []
    for mode in MODES:
        marks = [pytest.mark.skipif(not SCRAPY_REACTORLESS, reason="reactorless mode needs Scrapy 2.15+")] \
            if mode == "reactorless" else []
        params += [pytest.param(mode, f, marks=marks, id=f"{mode}-{f}") for f in FAULT_NAMES]
    if phase in ("preflight", "midrun"):
        params += [pytest.param("twisted", f, id=f"twisted-{f}") for f in TWISTED_SUBSET]
    return params


def signals_of(case: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in case["signals"] if s["signal"] == name]


def common_checks(case: dict[str, Any]) -> None:
    assert case["crash"] is None, case["crash"]
    assert case["pollers_left"] == [], "a poller thread was left behind"
    assert_no_traceback(case["log"], case["records"])
    assert KEY not in "\n".join(case["log"])
    assert all(s["main_thread"] for s in case["signals"]), "a signal was sent outside Scrapy's thread"
    for line in guard_lines(case["log"], "(?:WARNING|ERROR|INFO)"):
        assert_clear_line(line)


# -- pre-flight -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "fault"), _params("preflight"))
def test_preflight_fault_stops_before_any_request(batches: Batches, batch: str, fault: str) -> None:
    case = batches.case(batch, f"preflight-{fault}")
    common_checks(case)
    reason = expected_reason(fault)
    stats = case["stats"]
    assert stats["finish_reason"] == reason
    assert case["site_requests"] == 0
    assert "downloader/request_count" not in stats
    errors = lines_at(case["log"], "ERROR")
    assert len(errors) == 1 and guard_lines(errors, "ERROR") == errors, errors
    assert f"did not start the crawl [{reason}]" in errors[0]
    assert guard_lines(case["log"], "WARNING") == []
    tripped = signals_of(case, "guard_tripped")
    assert [t["reason"] for t in tripped] == [reason]
    checked = signals_of(case, "balance_checked")
    assert len(checked) == 1
    if fault in BALANCE_FAULTS:
        assert checked[0]["ok"] and checked[0]["balance"] == "-5"
        assert stats["vastcap/check_failures"] == 0
        assert stats["vastcap/balance"] == -5.0
    else:
        assert not checked[0]["ok"] and checked[0]["error_reason"] == reason
        assert stats["vastcap/check_failures"] == 1
        assert "vastcap/balance" not in stats
    if fault == "refused":
        assert case["getbalance_calls"] == 0
    else:
        assert case["getbalance_calls"] >= 1


@pytest.mark.parametrize(("batch", "fault"), _params("once"))
def test_preflight_fault_with_require_preflight_false_starts(batches: Batches, batch: str, fault: str) -> None:
    """The first check fails, the API then recovers: the crawl starts and runs to its end."""
    case = batches.case(batch, f"once-{fault}")
    common_checks(case)
    stats = case["stats"]
    if fault in BALANCE_FAULTS:  # a balance, not a failure: REQUIRE_PREFLIGHT does not apply
        assert stats["finish_reason"] == "vastcap_low_balance"
        assert case["site_requests"] == 0
        return
    assert stats["finish_reason"] == "finished"
    assert case["site_requests"] == 31  # "/" and 30 pages: every page
    assert signals_of(case, "guard_tripped") == []
    assert stats["vastcap/check_failures"] == 1
    checked = signals_of(case, "balance_checked")
    assert not checked[0]["ok"] and checked[0]["error_reason"] == expected_reason(fault)
    warnings = guard_lines(case["log"], "WARNING")
    assert len(warnings) == 1 and "VASTCAP_REQUIRE_PREFLIGHT = False" in warnings[0], warnings
    assert lines_at(case["log"], "ERROR") == []


# -- mid-run --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "fault"), _params("midrun"))
def test_midrun_fault_follows_the_failure_policy(batches: Batches, batch: str, fault: str) -> None:
    case = batches.case(batch, f"midrun-{fault}")
    common_checks(case)
    reason = expected_reason(fault)
    stats = case["stats"]
    assert stats["finish_reason"] == reason
    assert case["site_requests"] > 0  # it ran
    checked = signals_of(case, "balance_checked")
    assert checked[0]["ok"], "the pre-flight check should have passed"
    tripped = signals_of(case, "guard_tripped")
    assert [t["reason"] for t in tripped] == [reason]
    # what came before the stop
    before = case["signals"][: case["signals"].index(tripped[0])]
    failed_before = [s for s in before if s["signal"] == "balance_checked" and not s["ok"]]
    if fault in BALANCE_FAULTS:
        assert checked[1]["ok"] and checked[1]["balance"] == "-5"
        assert failed_before == []
        assert stats["vastcap/check_failures"] == 0
        assert guard_lines(case["log"], "WARNING") == []
    else:
        # exactly MAX_FAILURES failed checks, the first of them tolerated, the last one stops
        assert len(failed_before) == MIDRUN_MAX_FAILURES
        assert all(s["error_reason"] == reason for s in failed_before)
        assert tripped[0]["check_failures"] == MIDRUN_MAX_FAILURES
        assert stats["vastcap/check_failures"] == MIDRUN_MAX_FAILURES
        warnings = guard_lines(case["log"], "WARNING")
        assert len(warnings) == MIDRUN_MAX_FAILURES - 1, warnings
        assert f"balance check failed (1 in a row; the crawl stops after {MIDRUN_MAX_FAILURES})" in warnings[0]
    errors = lines_at(case["log"], "ERROR")
    assert len(errors) == 1 and guard_lines(errors, "ERROR") == errors, errors
    assert f"is stopping the crawl [{reason}]" in errors[0]
    # requests in flight finish; nothing much reaches the site after the decision
    assert case["site_requests_after_trip"] <= 4


# -- documented pre-flight gate with VASTCAP_MAX_FAILURES = 0 ----------------------------------------
@pytest.mark.parametrize("batch", ["asyncio"])
def test_max_failures_zero_keeps_the_preflight_gate(batches: Batches, batch: str) -> None:
    """docs/scrapy.md: VASTCAP_MAX_FAILURES counts failed checks *while running*;
    VASTCAP_REQUIRE_PREFLIGHT = True (the default) means "a failed first check stops the crawl"."""
    case = batches.case(batch, "maxfail0-http500")
    common_checks(case)
    assert case["stats"]["finish_reason"] == "vastcap_api_unavailable"
    assert case["site_requests"] == 0


@pytest.mark.parametrize("batch", ["asyncio"])
def test_tiny_exponent_balance_gives_one_clear_line(batches: Batches, batch: str) -> None:
    case = batches.case(batch, "preflight-tiny_exponent")
    assert case["crash"] is None
    assert case["stats"]["finish_reason"] in ("vastcap_low_balance", "vastcap_api_unavailable")
    assert case["site_requests"] == 0
    errors = lines_at(case["log"], "ERROR")
    assert len(errors) == 1
    assert_clear_line(errors[0])


@pytest.mark.parametrize("batch", ["asyncio", "reactorless", "twisted"])
def test_batch_process_output_is_clean(batches: Batches, batch: str) -> None:
    if batch == "reactorless" and not SCRAPY_REACTORLESS:
        pytest.skip("reactorless mode needs Scrapy 2.15+")
    run = batches.get(batch)
    assert "Traceback" not in run.stderr, run.stderr[-4000:]
    assert KEY not in run.stderr and KEY not in run.stdout
