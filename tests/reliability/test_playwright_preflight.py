"""Fault matrix for the Playwright guard at pre-flight, sync and async forms (no browser needed:
a refused pre-flight must not even run the body that would launch one).

Documented (docs/playwright.md): a failed pre-flight check raises the matching ``GuardError``
(``ApiUnavailableError``; ``ApiError`` for an unknown error code) and the body does not run; a
negative balance is ``LowBalanceError``; ``require_preflight=False`` lets the body start. One
ERROR line (or one WARNING when tolerated), no traceback, the key nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from rel_pw import assert_no_traceback, nothing_left_behind, records_at  # noqa: F401
from rel_support import (
    BALANCE_FAULTS,
    FAULT_NAMES,
    KEY,
    TINY_EXPONENT_BODY,
    assert_clear_line,
    expected_reason,
    free_port,
    inject,
)

from vastcap_guard import ApiError, ApiUnavailableError, GuardError, LowBalanceError
from vastcap_guard.playwright import PlaywrightGuard, guard
from vastcap_guard.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("nothing_left_behind")

ERROR_TYPES = {"vastcap_api_unavailable": ApiUnavailableError, "vastcap_low_balance": LowBalanceError,
               "vastcap_api_error": ApiError}


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}) as sandbox:
        yield sandbox


def faulty_url(sb: Sandbox, fault: str) -> str:
    if fault == "refused":
        return f"http://127.0.0.1:{free_port()}/api/solver"
    inject(sb, fault)
    return sb.url


def run(g: PlaywrightGuard, form: str, ran: list[str]) -> None:
    """Enter the guard in one of its forms; the body records that it ran."""
    if form == "decorator":
        @g
        def body() -> None:
            ran.append("body")

        body()
    elif form == "with":
        with g:
            ran.append("body")
    else:
        async def main() -> None:
            async with g:
                ran.append("body")

        asyncio.run(main())


#: the decorator is a thin wrapper around ``with`` / ``async with`` (one case each below)
FORMS = ["with", "async_with"]
#: require_preflight=False: alternate the sync and async forms across the faults
TOLERATED = [pytest.param(f, FORMS[i % 2], id=f"{f}-{FORMS[i % 2]}") for i, f in enumerate(FAULT_NAMES)]
TOLERATED += [pytest.param("http502_html", "decorator", id="http502_html-decorator")]


REFUSED = [pytest.param(f, form, id=f"{f}-{form}") for f in FAULT_NAMES for form in FORMS]
REFUSED += [pytest.param("http500", "decorator", id="http500-decorator")]


@pytest.mark.parametrize(("fault", "form"), REFUSED)
def test_preflight_fault_refuses_to_run_the_body(
    sb: Sandbox, caplog: pytest.LogCaptureFixture, fault: str, form: str
) -> None:
    caplog.set_level(logging.DEBUG)
    g = guard(KEY, api_url=faulty_url(sb, fault), interval=5, timeout=0.5)
    ran: list[str] = []
    with pytest.raises(GuardError) as info:
        run(g, form, ran)
    err = info.value
    reason = expected_reason(fault)
    assert type(err) is ERROR_TYPES[reason] and err.reason == reason
    assert ran == [], "the body ran although the pre-flight check failed"
    snap = g.snapshot()
    assert snap["tripped"] == reason
    assert snap["check_failures"] == (0 if fault in BALANCE_FAULTS else 1)
    errors = records_at(caplog, logging.ERROR)
    assert len(errors) == 1 and reason in errors[0].getMessage(), [r.getMessage() for r in errors]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == errors
    assert records_at(caplog, logging.WARNING) == []
    assert_clear_line(errors[0].getMessage())
    assert_clear_line(str(err))
    assert_no_traceback(caplog)
    for text in (caplog.text, str(err), repr(err), repr(g), str(snap)):
        assert KEY not in text


@pytest.mark.parametrize(("fault", "form"), TOLERATED)
def test_preflight_fault_with_require_preflight_false_runs_the_body(
    sb: Sandbox, caplog: pytest.LogCaptureFixture, fault: str, form: str
) -> None:
    caplog.set_level(logging.DEBUG)
    g = guard(KEY, api_url=faulty_url(sb, fault), interval=5, timeout=0.5, require_preflight=False)
    ran: list[str] = []
    if fault in BALANCE_FAULTS:  # a balance, not a failure: still refused
        with pytest.raises(LowBalanceError):
            run(g, form, ran)
        assert ran == []
        return
    run(g, form, ran)
    assert ran == ["body"]
    snap = g.snapshot()
    assert snap["tripped"] is None and isinstance(snap["check_failures"], int) and snap["check_failures"] >= 1
    warnings = records_at(caplog, logging.WARNING)
    assert len(warnings) == snap["check_failures"], [r.getMessage() for r in warnings]
    assert "balance check failed (1 in a row" in warnings[0].getMessage()
    assert "require_preflight=False: the Playwright script starts without a confirmed balance" in warnings[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert_no_traceback(caplog)
    assert KEY not in caplog.text


def test_tiny_exponent_balance_gives_one_clear_line(sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sb.fault("getBalance", "body", body=TINY_EXPONENT_BODY)
    with pytest.raises(GuardError) as info, guard(KEY, api_url=sb.url, interval=5, timeout=0.5):
        pass
    assert info.value.reason in ("vastcap_low_balance", "vastcap_api_unavailable")
    errors = records_at(caplog, logging.ERROR)
    assert len(errors) == 1
    assert_clear_line(errors[0].getMessage())
    assert_clear_line(str(info.value))
