"""Warnings that do not stop a guarded script: warn_balance and warn_minutes (no browser needed)."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import pytest
from core_keys import KEY
from pw_fixtures import (  # noqa: F401
    hanging_fixture,
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)
from pw_support import wait_until

from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "vastcap_guard.playwright" and text in r.getMessage()]


def test_warn_balance_logs_once_and_goes_on(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vastcap_guard")
    with guard(KEY, api_url=sandbox.url, interval=0.2, warn_balance="5") as g:
        sandbox.set_balance(KEY, "4")
        assert wait_until(lambda: g.balance == Decimal("4"))
        checks = g.snapshot()["checks"]
        assert wait_until(lambda: g.snapshot()["checks"] >= checks + 3)  # more low readings
    assert g.tripped is None
    found = warnings(caplog, "below the warning level")
    assert len(found) == 1 and found[0].levelno == logging.WARNING
    assert "$4.00" in found[0].getMessage() and "$5.00" in found[0].getMessage()


def test_warn_minutes_logs_once_when_the_money_runs_out_soon(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vastcap_guard")

    async def main() -> None:
        async with guard(KEY, api_url=sandbox.url, interval=0.2, warn_minutes=60) as g:
            assert g.forecast.state == "unknown"  # one reading: no guess shown as fact
            balance = Decimal("10.25")
            deadline = time.monotonic() + 20
            while not warnings(caplog, "lasts less than") and time.monotonic() < deadline:
                balance -= Decimal("0.05")  # $15/min: the money lasts well under an hour
                sandbox.set_balance(KEY, balance)
                await asyncio.sleep(0.2)
            for _ in range(5):  # keep spending: still one warning
                balance -= Decimal("0.05")
                sandbox.set_balance(KEY, balance)
                await asyncio.sleep(0.2)
            forecast = g.forecast
            assert forecast.state == "spending" and forecast.spend_per_minute is not None
            assert forecast.minutes_left is not None and forecast.minutes_left < 60
        assert g.tripped is None
        assert g.forecast.state == "spending"  # the last run's forecast stays readable

    asyncio.run(main())
    found = warnings(caplog, "lasts less than")
    assert len(found) == 1, [r.getMessage() for r in found]
    assert "60 minutes" in found[0].getMessage() and "/min" in found[0].getMessage()


def test_bad_warn_minutes_is_a_config_error() -> None:
    from vastcap_guard import ConfigError

    with pytest.raises(ConfigError) as info:
        guard(KEY, warn_minutes="soon")  # type: ignore[arg-type]
    assert info.value.setting == "warn_minutes"


def test_max_spend_stops_with_budget_exceeded(sandbox: Sandbox) -> None:
    from vastcap_guard import BudgetExceededError

    with pytest.raises(BudgetExceededError) as info:
        with guard(KEY, api_url=sandbox.url, interval=0.2, max_spend="1") as g:
            sandbox.set_balance(KEY, "9")  # $1.25 spent since the start
            assert wait_until(lambda: g.tripped is not None)
    assert info.value.spent == Decimal("1.25") and info.value.max_spend == Decimal("1")


def test_unreachable_api_at_preflight_refuses(sandbox: Sandbox) -> None:
    from vastcap_guard import ApiUnavailableError

    sandbox.fault("getBalance", "status", status=502)
    ran = []
    with pytest.raises(ApiUnavailableError):
        with guard(KEY, api_url=sandbox.url, interval=0.2, timeout=2):
            ran.append(True)
    assert ran == []
