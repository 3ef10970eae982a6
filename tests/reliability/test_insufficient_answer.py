"""An "insufficient balance" error answer (``ERROR_ZERO_BALANCE`` / ``ERROR_INSUFFICIENT_BALANCE``)
instead of a balance: a stop with ``vastcap_low_balance`` (README: "balance below the minimum
(or VastCap says the balance is insufficient)"), whose ``LowBalanceError.minimum`` is the
documented "minimum" - the one the user configured.
"""

from __future__ import annotations

import io
import json
import logging
from decimal import Decimal

import pytest
from rel_pw import nothing_left_behind  # noqa: F401
from rel_support import KEY

from vastcap_guard import LowBalanceError
from vastcap_guard.cli import main as cli_main
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox

ZERO = json.dumps({"error": {"errorId": 3, "errorCode": "ERROR_ZERO_BALANCE", "errorDescription": "No money"}})


@pytest.mark.usefixtures("nothing_left_behind")
def test_insufficient_answer_stops_with_low_balance(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with Sandbox({KEY: "10"}) as sb:
        sb.fault("getBalance", "body", body=ZERO)
        with pytest.raises(LowBalanceError) as info, guard(KEY, api_url=sb.url, interval=5, min_balance="0.5"):
            pass
    assert info.value.reason == "vastcap_low_balance"
    assert info.value.balance == 0
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


@pytest.mark.usefixtures("nothing_left_behind")
def test_insufficient_answer_reports_the_configured_minimum() -> None:
    with Sandbox({KEY: "10"}) as sb:
        sb.fault("getBalance", "body", body=ZERO)
        with pytest.raises(LowBalanceError) as info, guard(KEY, api_url=sb.url, interval=5, min_balance="0.5"):
            pass
    assert info.value.minimum == Decimal("0.5")


def test_cli_insufficient_answer_reports_the_configured_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VASTCAP_API_KEY", KEY)
    out, err = io.StringIO(), io.StringIO()
    with Sandbox({KEY: "10"}) as sb:
        sb.fault("getBalance", "body", body=ZERO)
        code = cli_main(["check", "--json", "--min-balance", "0.5", "--api-url", sb.url], stdout=out, stderr=err)
    assert code == 10
    assert json.loads(out.getvalue())["minimum"] == 0.5
