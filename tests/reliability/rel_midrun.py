"""What a Playwright mid-run fault case must show, shared by the sync and async modules."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from rel_pw import assert_no_traceback, records_at
from rel_support import BALANCE_FAULTS, KEY, MIDRUN_MAX_FAILURES, assert_clear_line, expected_reason

from vastcap_guard import ApiError, ApiUnavailableError, GuardError, LowBalanceError
from vastcap_guard.playwright import PlaywrightGuard

ERROR_TYPES = {"vastcap_api_unavailable": ApiUnavailableError, "vastcap_low_balance": LowBalanceError,
               "vastcap_api_error": ApiError}

#: how long a case may wait for the stop before it counts as "never stopped" (generous)
STOP_WITHIN = 20.0


def check_midrun_outcome(fault: str, g: PlaywrightGuard, err: BaseException | None, body_finished: bool,
                         caplog: pytest.LogCaptureFixture, context_open: bool) -> None:
    reason = expected_reason(fault)
    assert not body_finished, f"the guard never stopped the script ({STOP_WITHIN}s)"
    assert isinstance(err, GuardError), repr(err)
    assert type(err) is ERROR_TYPES[reason] and err.reason == reason
    # documented: raised instead of what Playwright raised, chained from it
    assert isinstance(err.__cause__, PlaywrightError), repr(err.__cause__)
    assert not context_open, "the tracked context was not closed"
    snap = g.snapshot()
    assert snap["tripped"] == reason
    warnings = [r.getMessage() for r in records_at(caplog, logging.WARNING)]
    if fault in BALANCE_FAULTS:
        assert snap["check_failures"] == 0
        assert isinstance(snap["balance"], Decimal) and snap["balance"] < 0
        assert warnings == []
    else:
        # the first failed check is tolerated (one WARNING), the MAX_FAILURES-th stops
        assert snap["check_failures"] == MIDRUN_MAX_FAILURES
        assert len(warnings) == MIDRUN_MAX_FAILURES - 1, warnings
        assert f"balance check failed (1 in a row; the Playwright script stops after {MIDRUN_MAX_FAILURES})" in warnings[0]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name.startswith("vastcap_guard"), [r.getMessage() for r in errors]
    assert f"[{reason}]" in errors[0].getMessage()
    assert_clear_line(errors[0].getMessage())
    assert_clear_line(str(err))
    assert_no_traceback(caplog)
    for text in (caplog.text, str(err), repr(err), str(err.__cause__), repr(g), str(snap)):
        assert KEY not in text


def outcome() -> dict[str, Any]:
    return {"err": None, "finished": False}
