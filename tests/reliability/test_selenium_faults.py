"""Fault matrix for the Selenium guard: every getBalance fault at pre-flight and mid-run.

Documented (docs/selenium.md): a failed pre-flight check raises the matching ``GuardError``
(``ApiUnavailableError``; ``ApiError`` for an unknown error code; ``LowBalanceError`` for a
negative balance) and the body does not run, so no driver starts. While the script runs, fewer
than ``max_failures`` failed checks in a row never stop it (one WARNING each); the next one stops
its drivers and the block raises the failure's ``GuardError`` chained from Selenium's error. One
ERROR line, no traceback, no urllib3 retry warning, the key nowhere, no chromedriver or browser
left.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from rel_pw import assert_no_traceback, records_at
from rel_support import (
    BALANCE_FAULTS,
    FAULT_NAMES,
    KEY,
    MIDRUN_MAX_FAILURES,
    assert_clear_line,
    expected_reason,
    free_port,
    inject,
)

from vastcap_guard import ApiError, ApiUnavailableError, GuardError, LowBalanceError
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

sys.path.insert(0, str(Path(__file__).parent.parent / "selenium"))
from sel_support import MISSING, TOKEN_VAR, Processes, chrome, nothing_left_behind_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("nothing_left_behind")

ERROR_TYPES = {"vastcap_api_unavailable": ApiUnavailableError, "vastcap_low_balance": LowBalanceError,
               "vastcap_api_error": ApiError}
#: how long a mid-run case may wait for the stop before it counts as "never stopped" (generous)
STOP_WITHIN = 20.0


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=64) as s:
        yield s


@pytest.fixture
def procs(monkeypatch: pytest.MonkeyPatch) -> Processes:
    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, token)
    return Processes(token)


def assert_quiet(caplog: pytest.LogCaptureFixture, err: GuardError, reason: str) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "vastcap_guard.selenium", [r.getMessage() for r in errors]
    assert f"[{reason}]" in errors[0].getMessage()
    assert_clear_line(errors[0].getMessage())
    assert_clear_line(str(err))
    assert_no_traceback(caplog)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("urllib3") and r.levelno >= logging.WARNING] == []


#: every fault with ``with``; the decorator is a thin wrapper around it (one case)
PREFLIGHT = [pytest.param(f, "with", id=f) for f in FAULT_NAMES]
PREFLIGHT += [pytest.param("http500", "decorator", id="http500-decorator")]


@pytest.mark.parametrize(("fault", "form"), PREFLIGHT)
def test_selenium_preflight_fault_starts_no_driver(
    sb: Sandbox, procs: Processes, caplog: pytest.LogCaptureFixture, fault: str, form: str
) -> None:
    from vastcap_guard.selenium import guard

    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/api/solver" if fault == "refused" else sb.url
    if fault != "refused":
        inject(sb, fault)
    g = guard(KEY, api_url=url, interval=5, timeout=0.5)
    ran: list[str] = []

    def body() -> None:
        ran.append("body")
        chrome()

    with pytest.raises(GuardError) as info:
        if form == "decorator":
            g(body)()
        else:
            with g:
                body()
    err, reason = info.value, expected_reason(fault)
    assert type(err) is ERROR_TYPES[reason] and err.reason == reason
    assert ran == [] and procs.live() == []
    snap = g.snapshot()
    assert snap["tripped"] == reason
    assert snap["check_failures"] == (0 if fault in BALANCE_FAULTS else 1)
    assert records_at(caplog, logging.WARNING) == []
    assert_quiet(caplog, err, reason)
    for text in (caplog.text, str(err), repr(err), repr(g), str(snap)):
        assert KEY not in text


@pytest.mark.browser
@pytest.mark.skipif(bool(MISSING), reason=f"needs chromium and chromium-driver: {MISSING} missing")
@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_selenium_midrun_fault(
    site: LocalSite, procs: Processes, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    from vastcap_guard.selenium import guard

    caplog.set_level(logging.DEBUG)
    reason = expected_reason(fault)
    finished = False
    with Sandbox({KEY: "10"}) as sb:
        g = guard(KEY, api_url=sb.url, interval=0.3, timeout=0.5, max_failures=MIDRUN_MAX_FAILURES)
        with pytest.raises(GuardError) as info:
            with g:
                driver = chrome()
                driver.get(site.url)
                inject(sb, fault)
                deadline, n = time.monotonic() + STOP_WITHIN, 0
                while time.monotonic() < deadline:
                    driver.get(site.page_url(n % site.pages))  # busy inside Selenium, as a real script is
                    n += 1
                finished = True
    err = info.value
    assert not finished, f"the guard never stopped the script ({STOP_WITHIN}s)"
    assert type(err) is ERROR_TYPES[reason] and err.reason == reason
    assert err.__cause__ is not None, "not chained from Selenium's error"
    assert type(err.__cause__).__module__.startswith("selenium"), repr(err.__cause__)
    procs.assert_gone()
    snap = g.snapshot()
    assert snap["tripped"] == reason
    warnings = [r.getMessage() for r in records_at(caplog, logging.WARNING)]
    if fault in BALANCE_FAULTS:
        assert snap["check_failures"] == 0 and warnings == []
        assert isinstance(snap["balance"], Decimal) and snap["balance"] < 0
    else:
        # the first failed check is tolerated (one WARNING), the MAX_FAILURES-th stops
        assert snap["check_failures"] == MIDRUN_MAX_FAILURES
        assert len(warnings) == MIDRUN_MAX_FAILURES - 1, warnings
        assert f"balance check failed (1 in a row; the Selenium script stops after {MIDRUN_MAX_FAILURES})" in warnings[0]
    assert_quiet(caplog, err, reason)
    for text in (caplog.text, str(err), repr(err), str(err.__cause__), repr(g), str(snap)):
        assert KEY not in text
