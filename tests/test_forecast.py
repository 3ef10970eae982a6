"""The burn-rate estimator on synthetic reading sequences."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from vastcap_guard.forecast import BurnRate


def feed(br: BurnRate, points: list[tuple[str, float]]) -> None:
    for balance, t in points:
        br.add(Decimal(balance), t)


def test_steady_spend() -> None:
    br = BurnRate(Decimal("0"), min_readings=3)
    feed(br, [("10", 0), ("9.5", 60), ("9", 120), ("8.5", 180)])
    f = br.forecast
    assert f.state == "spending"
    assert f.spend_per_minute == Decimal("0.5")
    assert f.minutes_left == Decimal("17")


def test_minimum_is_subtracted() -> None:
    br = BurnRate(Decimal("1"))
    feed(br, [("3", 0), ("2.5", 60), ("2", 120)])
    assert br.forecast.minutes_left == Decimal("2")


def test_one_reading_is_unknown() -> None:
    br = BurnRate()
    feed(br, [("10", 0)])
    assert br.forecast.state == "unknown"
    assert br.forecast.spend_per_minute is None and br.forecast.minutes_left is None
    assert str(br.forecast) == "forecast unknown"


def test_too_short_a_span_is_unknown() -> None:
    br = BurnRate(min_span=10)
    feed(br, [("10", 0), ("9", 1), ("8", 2)])
    assert br.forecast.state == "unknown"


def test_flat_balance_is_no_spend_not_a_division_by_zero() -> None:
    br = BurnRate()
    feed(br, [("10", 0), ("10", 60), ("10", 120)])
    f = br.forecast
    assert f.state == "no_spend" and f.spend_per_minute == 0 and f.minutes_left is None


def test_top_up_restarts_the_estimate() -> None:
    br = BurnRate(Decimal(0))
    feed(br, [("10", 0), ("9", 60), ("8", 120), ("50", 180)])
    assert br.forecast.state == "unknown"  # one reading since the top-up
    feed(br, [("49", 240), ("48", 300)])
    f = br.forecast
    assert f.state == "spending" and f.spend_per_minute == Decimal("1") and f.minutes_left == Decimal("48")


def test_noisy_spend_is_estimated_near_the_true_rate() -> None:
    rng = random.Random(7)
    br = BurnRate(Decimal(0), window=30)
    balance = Decimal("100")
    for i in range(30):
        noise = Decimal(rng.randint(-5, 5)) / 1000  # ±$0.005 around a $0.10/min spend
        br.add(balance - Decimal("0.1") * i + noise, i * 60.0)
    f = br.forecast
    # a rising noisy step would restart the estimate; the noise is small against the spend
    assert f.state == "spending"
    assert f.spend_per_minute is not None
    assert Decimal("0.08") < f.spend_per_minute < Decimal("0.12")


def test_duplicate_and_out_of_order_readings_are_ignored() -> None:
    br = BurnRate(Decimal(0))
    feed(br, [("10", 0), ("9", 60), ("8", 120), ("1", 60), ("0", 120)])
    assert br.forecast.spend_per_minute == Decimal(1)


def test_below_minimum_means_zero_minutes_left() -> None:
    br = BurnRate(Decimal("5"))
    feed(br, [("6", 0), ("5", 60), ("4", 120)])
    assert br.forecast.minutes_left == 0


def test_min_readings_validation() -> None:
    with pytest.raises(ValueError, match="min_readings"):
        BurnRate(min_readings=1)


def test_a_flat_balance_decays_to_no_spend() -> None:
    # issue 15: after spending stopped, watch kept showing "spending $0.2/min" for 17 flat readings
    br = BurnRate(Decimal(0))
    balance = Decimal(10)
    t = 0.0
    for _ in range(10):  # a debit every reading, one a second
        balance -= Decimal("0.003")
        t += 1
        br.add(balance, t)
    assert br.forecast.state == "spending"
    states = []
    for _ in range(17):  # then nothing more is spent
        t += 1
        br.add(balance, t)
        states.append(br.forecast.state)
    # documented: "no spend" once flat for three times the usual gap between debits (here 3 s)
    assert states[:3] == ["spending"] * 3 and set(states[3:]) == {"no_spend"}


def test_a_forecast_from_the_guard_ignores_the_wall_clock() -> None:
    # issue 15: the forecast used Reading.at (wall clock): a clock jump of an hour corrupted it
    from core_keys import KEY

    from vastcap_guard import Guard, GuardConfig, Reading

    g = Guard(GuardConfig.build(KEY, environ={}, min_balance="0"))
    for i, (balance, jump) in enumerate([("10", 0), ("9", 0), ("8", 3600), ("7", 3600)]):
        g.observe(Reading(Decimal(balance), at=1_000_000.0 + 60 * i + jump, monotonic=500.0 + 60 * i, seq=i + 1))
    assert g.forecast.spend_per_minute == Decimal(1) and g.forecast.minutes_left == Decimal(7)
