"""GuardedRun.ensure_funds in pause mode: a spend the balance cannot cover is refused and pauses the
job (it is not stopped) until a reading shows the balance can pay; close mode still stops it."""

from __future__ import annotations

import logging

import pytest
from core_keys import KEY

from vastcap_guard import BudgetExceededError, GuardConfig, LowBalanceError
from vastcap_guard.run import GuardedRun
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.wording import PYTHON_NAMES, Wording

WORDS = Wording(job="test job", names=PYTHON_NAMES)
logger = logging.getLogger("vastcap_guard.test")


def started(sb: Sandbox, mode: str, **kw: object) -> GuardedRun:
    cfg = GuardConfig.build(KEY, api_url=sb.url, interval=30, on_low_balance=mode, environ={}, **kw)
    run = GuardedRun(cfg, WORDS, logger=logger)
    run.start_blocking()
    return run


@pytest.mark.parametrize("mode", ["pause", "close"])
def test_a_spend_below_the_minimum_is_refused_and_stops_only_in_close_mode(sandbox: Sandbox, mode: str) -> None:
    run = started(sandbox, mode)
    try:
        with pytest.raises(LowBalanceError):
            run.ensure_funds("10.25")  # would leave $0.00
        assert (run.tripped is None) == (mode == "pause")
        if mode == "pause":
            assert run.paused  # the job waits for a top-up that covers the refused spend
            with pytest.raises(LowBalanceError) as refused:
                run.ensure_funds("1")  # nothing is spent while paused
            # the balance covers this one: the message says why it is refused all the same
            assert "waits for a top-up" in str(refused.value) and "$10.251" in str(refused.value)
            assert "below the minimum" not in str(refused.value)
            sandbox.set_balance(KEY, "20")
            run.take(run.request(max_age=None).result(timeout=30))
            assert not run.paused and run.tripped is None
            assert run.ensure_funds("1") == run.balance - 1
    finally:
        run.close()


def test_a_spend_cap_still_stops_in_pause_mode(sandbox: Sandbox) -> None:
    run = started(sandbox, "pause", max_spend="0.01")
    try:
        with pytest.raises(BudgetExceededError):
            run.ensure_funds("0.02")
        assert run.reason == "vastcap_budget_exceeded"
    finally:
        run.close()
