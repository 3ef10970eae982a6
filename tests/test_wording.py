"""Wording for adapters that hand a stop to the framework and send unsent requests back to a queue."""

from __future__ import annotations

from decimal import Decimal

from vastcap_guard import InvalidKeyError, LowBalanceError
from vastcap_guard.wording import PYTHON_NAMES, Wording

WORDS = Wording(job="crawl", names=PYTHON_NAMES)


def test_stop_reason_is_short_and_ends_without_a_period() -> None:
    low = LowBalanceError("The VastCap balance is $0.00.", balance=Decimal(0), minimum=Decimal("0.001"))
    assert WORDS.stop_reason(low) == "vastcap-guard stopped the crawl [vastcap_low_balance]"
    assert WORDS.stop_reason(InvalidKeyError("no such key")).endswith("[vastcap_invalid_key]")


def test_held_says_the_request_was_not_sent_and_where_it_went() -> None:
    paused = WORDS.held("vastcap_low_balance", paused=True)
    stopped = WORDS.held("vastcap_account_disabled", paused=False)
    assert paused.startswith("vastcap-guard paused the crawl [vastcap_low_balance]")
    assert "not sent" in paused and "top-up" in paused
    assert stopped.startswith("vastcap-guard stopped the crawl [vastcap_account_disabled]")
    assert "not sent" in stopped and "resume" in stopped
    for line in (paused, stopped):
        assert "\n" not in line and not line.endswith(".")
