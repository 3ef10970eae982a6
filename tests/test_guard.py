"""The decision logic on synthetic readings: no I/O."""

from __future__ import annotations

from decimal import Decimal

import pytest
from core_keys import KEY

from vastcap_guard import (
    AccountDisabledError,
    Action,
    ApiError,
    ApiUnavailableError,
    BudgetExceededError,
    ConfigError,
    Guard,
    GuardConfig,
    InvalidKeyError,
    LowBalanceError,
    Reading,
)

_seq = iter(range(1, 10_000))


def ok(balance: str) -> Reading:
    return Reading(Decimal(balance), seq=next(_seq))


def down() -> Reading:
    return Reading(None, ApiUnavailableError("down"), seq=next(_seq))


def guard(**kw: object) -> Guard:
    return Guard(GuardConfig.build(KEY, environ={}, **kw))  # type: ignore[arg-type]


def actions(g: Guard, readings: list[Reading]) -> list[str]:
    out = []
    for r in readings:
        v = g.observe(r)
        assert v is not None
        out.append(v.action.value if not v.stop else f"stop:{v.reason}")
    return out


def test_ok_then_low_balance_stops_with_balance_and_minimum() -> None:
    g = guard()
    assert actions(g, [ok("1"), ok("0.0009")]) == ["ok", "stop:vastcap_low_balance"]
    assert isinstance(g.tripped, LowBalanceError)
    assert g.tripped.balance == Decimal("0.0009") and g.tripped.minimum == Decimal("0.001")
    assert "$0.0009" in str(g.tripped) and "Top up" in str(g.tripped)


def test_exactly_the_minimum_can_pay() -> None:
    assert actions(guard(), [ok("0.001")]) == ["ok"]


def test_after_a_stop_every_reading_is_a_stop() -> None:
    g = guard()
    actions(g, [ok("0")])
    assert actions(g, [ok("100")]) == ["stop:vastcap_low_balance"]


def test_warning_once_per_crossing_and_again_after_top_up() -> None:
    g = guard(warn_balance="1")
    assert actions(g, [ok("5"), ok("0.9"), ok("0.8"), ok("5"), ok("0.5")]) == ["ok", "warn", "ok", "ok", "warn"]


def test_spend_cap_counts_decreases_only() -> None:
    g = guard(max_spend="1")
    # spend 0.6, top up, spend 0.4 more: 1.0 spent in all although the balance is higher than at start
    assert actions(g, [ok("10"), ok("9.4"), ok("20"), ok("19.6")]) == ["ok", "ok", "ok", "stop:vastcap_budget_exceeded"]
    assert isinstance(g.tripped, BudgetExceededError)
    assert g.spent == Decimal("1.0") and g.balance_start == Decimal("10")


def test_preflight_failure_stops_at_once() -> None:
    assert actions(guard(), [down()]) == ["stop:vastcap_api_unavailable"]


def test_preflight_failure_tolerated_when_not_required() -> None:
    assert actions(guard(require_preflight=False), [down(), ok("1")]) == ["failed", "ok"]


def test_consecutive_failures_policy() -> None:
    g = guard(max_failures=3)
    assert actions(g, [ok("5"), down(), down(), ok("5"), down(), down(), down()]) == [
        "ok", "failed", "failed", "ok", "failed", "failed", "stop:vastcap_api_unavailable",
    ]
    assert g.check_failures == 5 and g.checks == 7


def test_max_failures_zero_never_stops_on_failures_while_running() -> None:
    g = guard(max_failures=0)
    assert set(actions(g, [ok("5")] + [down() for _ in range(20)])) == {"ok", "failed"}


def test_max_failures_zero_keeps_the_preflight_gate() -> None:
    # max_failures governs checks while running; require_preflight governs the first one
    assert actions(guard(max_failures=0), [down()]) == ["stop:vastcap_api_unavailable"]
    assert actions(guard(max_failures=0, require_preflight=False), [down(), down()]) == ["failed", "failed"]


def test_insufficient_balance_answer_uses_the_configured_minimum() -> None:
    api = LowBalanceError("insufficient", balance=Decimal(0), minimum=Decimal("0.001"))
    g = guard(min_balance="0.5")
    actions(g, [Reading(None, api, seq=next(_seq))])
    assert isinstance(g.tripped, LowBalanceError) and g.tripped.minimum == Decimal("0.5")


def test_format_usd_stays_short() -> None:
    from vastcap_guard.guard import format_usd

    assert format_usd(Decimal("10.25")) == "$10.25"
    assert format_usd(Decimal("0.0005")) == "$0.0005"
    assert format_usd(Decimal("3")) == "$3.00"
    assert len(format_usd(Decimal("1e-999999"))) < 20
    assert len(format_usd(Decimal("0.123456789123456789"))) <= 12


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (InvalidKeyError("x"), "vastcap_invalid_key"),
        (AccountDisabledError("x"), "vastcap_account_disabled"),
    ],
)
def test_account_answers_stop_at_once_even_mid_run(error: Exception, reason: str) -> None:
    g = guard(max_failures=0)
    assert actions(g, [ok("5"), Reading(None, error, seq=next(_seq))]) == ["ok", f"stop:{reason}"]  # type: ignore[arg-type]


def test_unknown_api_error_follows_failure_policy_and_keeps_reason() -> None:
    err = ApiError("odd", code="ERROR_X")
    g = guard(max_failures=2)
    assert actions(g, [ok("5"), Reading(None, err, seq=next(_seq)), Reading(None, err, seq=next(_seq))]) == [
        "ok", "failed", "stop:vastcap_api_error",
    ]


def test_reading_seen_twice_counts_once() -> None:
    g = guard()
    r = ok("5")
    assert g.observe(r) is not None
    assert g.observe(r) is None
    assert g.checks == 1


def test_no_key_is_a_preflight_error() -> None:
    g = Guard(GuardConfig.build(None, environ={}))
    err = g.preflight_error()
    assert isinstance(err, InvalidKeyError) and g.tripped is err


def test_reserve_projects_and_refuses_without_tripping() -> None:
    g = guard(min_balance="0.01")
    g.observe(ok("0.05"))
    assert g.reserve(Decimal("0.02")) == Decimal("0.03")
    assert g.reserve(Decimal("0.02")) == Decimal("0.01")
    with pytest.raises(LowBalanceError):
        g.reserve(Decimal("0.002"))
    assert g.tripped is None
    g.observe(ok("0.5"))  # a top-up: the reservations are still owed
    assert g.reserve(Decimal("0.1")) == Decimal("0.36")


def test_a_reading_settles_only_the_spend_it_shows() -> None:
    g = guard(min_balance="0")
    g.observe(ok("1"))
    for _ in range(3):
        g.reserve(Decimal("0.1"))
    g.observe(ok("0.9"))  # one of three reserved solves was charged so far
    assert g.pending_spend == Decimal("0.2")
    assert g.reserve(Decimal("0.1")) == Decimal("0.6")


def test_reservations_outlive_a_slow_debit(monkeypatch: pytest.MonkeyPatch) -> None:
    # a solve is charged when it is ready, seconds after the paid request: the reservation must
    # still count then, or the spend cap is passed (it used to expire after two intervals)
    import vastcap_guard.guard as guard_module

    g = guard(min_balance="0", interval=1, max_spend="0.005")
    g.observe(ok("1"))
    g.reserve(Decimal("0.002"))
    g.reserve(Decimal("0.002"))
    now = guard_module.time.monotonic()
    monkeypatch.setattr(guard_module.time, "monotonic", lambda: now + 3)
    g.observe(ok("1"))  # nothing charged yet
    assert g.pending_spend == Decimal("0.004")
    with pytest.raises(BudgetExceededError):
        g.reserve(Decimal("0.002"))


def test_reservations_expire_when_no_reading_shows_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import vastcap_guard.guard as guard_module

    g = guard(min_balance="0", interval=1)
    g.observe(ok("1"))
    g.reserve(Decimal("0.5"))
    now = guard_module.time.monotonic()
    monkeypatch.setattr(guard_module.time, "monotonic", lambda: now + guard_module.RESERVATION_HOLD + 1)
    g.observe(ok("1"))
    assert g.pending_spend == 0


def test_a_released_reservation_is_forgotten() -> None:
    g = guard(min_balance="0")
    g.observe(ok("1"))
    g.reserve(Decimal("0.3"))
    g.reserve(Decimal("0.2"))
    g.release(Decimal("0.3"))
    assert g.pending_spend == Decimal("0.2")
    g.release(Decimal("0.7"))  # never reserved: nothing changes
    assert g.pending_spend == Decimal("0.2")


def test_reserve_respects_cap_and_trip() -> None:
    g = guard(max_spend="0.05")
    g.observe(ok("1"))
    g.reserve(Decimal("0.04"))
    with pytest.raises(BudgetExceededError):
        g.reserve(Decimal("0.02"))
    g.trip(LowBalanceError("x", balance=Decimal(0), minimum=Decimal("0.001")))
    with pytest.raises(LowBalanceError):
        g.reserve(Decimal("0"))


def test_reserve_before_any_reading() -> None:
    with pytest.raises(ApiUnavailableError):
        guard().reserve(Decimal("0.01"))


@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("interval", "abc", "VASTCAP_CHECK_INTERVAL"),
        ("interval", -1, "VASTCAP_CHECK_INTERVAL"),
        ("interval", 0, "VASTCAP_CHECK_INTERVAL"),
        ("interval", float("nan"), "VASTCAP_CHECK_INTERVAL"),
        ("min_balance", "lots", "VASTCAP_MIN_BALANCE"),
        ("min_balance", -1, "VASTCAP_MIN_BALANCE"),
        ("min_balance", True, "VASTCAP_MIN_BALANCE"),
        ("max_failures", 1.5, "VASTCAP_MAX_FAILURES"),
        ("max_failures", -1, "VASTCAP_MAX_FAILURES"),
        ("timeout", "0", "VASTCAP_TIMEOUT"),
        ("api_url", "ftp://x", "VASTCAP_API_URL"),
        ("max_spend", "0", "VASTCAP_MAX_SPEND"),
    ],
)
def test_bad_config_names_the_setting(field: str, value: object, setting: str) -> None:
    names = {field: setting}
    with pytest.raises(ConfigError) as info:
        GuardConfig.build(KEY, environ={}, names=names, **{field: value})  # type: ignore[arg-type]
    assert setting in str(info.value) and info.value.setting == setting


def test_config_from_strings_and_environment() -> None:
    cfg = GuardConfig.build(
        None, environ={"VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": "http://127.0.0.1:1/api/solver/"},
        interval="2.5", min_balance="0.5", max_failures="4",
    )
    assert cfg.api_key == KEY and cfg.api_url == "http://127.0.0.1:1/api/solver"
    assert cfg.interval == 2.5 and cfg.min_balance == Decimal("0.5") and cfg.max_failures == 4
    assert KEY not in repr(cfg)


def test_float_settings_keep_the_written_value() -> None:
    assert GuardConfig.build(KEY, environ={}, min_balance=0.1).min_balance == Decimal("0.1")


def test_verdict_reason_only_for_stops() -> None:
    g = guard(max_failures=3)
    v = g.observe(ok("1"))
    assert v is not None and v.reason is None and v.action is Action.OK


def test_forecast_is_unknown_then_spending_and_warns_once() -> None:
    g = guard(warn_minutes=10, min_balance="0")
    verdicts = []
    for i, bal in enumerate(["10", "9", "8", "7", "6"]):
        v = g.observe(Reading(Decimal(bal), monotonic=1000.0 + 60 * i, seq=next(_seq)))
        assert v is not None
        verdicts.append(v)
    assert verdicts[0].forecast is not None and verdicts[0].forecast.state == "unknown"
    assert [v.forecast_low for v in verdicts] == [False, False, True, False, False]
    assert g.forecast.spend_per_minute == Decimal(1) and g.forecast.minutes_left == Decimal(6)
    assert g.snapshot()["minutes_left"] == Decimal(6)


def test_forecast_warning_rearms_after_top_up() -> None:
    g = guard(warn_minutes=10, min_balance="0")
    seq = ["10", "9", "8", "100", "100", "100", "8", "7", "6"]
    lows = []
    for i, bal in enumerate(seq):
        v = g.observe(Reading(Decimal(bal), monotonic=60.0 * i, seq=next(_seq)))
        assert v is not None
        lows.append(v.forecast_low)
    assert lows.count(True) == 2


def test_warn_minutes_config() -> None:
    assert GuardConfig.build(KEY, environ={}, warn_minutes="2.5").warn_minutes == 2.5
    with pytest.raises(ConfigError, match="VASTCAP_WARN_MINUTES"):
        GuardConfig.build(KEY, environ={}, warn_minutes="soon", names={"warn_minutes": "VASTCAP_WARN_MINUTES"})


# -- pause mode ------------------------------------------------------------------------------------
def test_pause_mode_pauses_holds_and_resumes_on_a_top_up() -> None:
    g = guard(on_low_balance="pause")
    assert actions(g, [ok("1"), ok("0.0005"), ok("0.0005"), down(), ok("0.0009"), ok("0.001")]) == [
        "ok", "pause", "hold", "failed", "hold", "resume"]
    assert g.tripped is None and not g.paused
    assert g.pauses == 1 and g.paused_seconds > 0 and g.last_pause_seconds > 0


def test_pause_mode_only_pauses_for_a_low_balance() -> None:
    g = guard(on_low_balance="pause")
    g.observe(ok("0"))
    assert g.paused
    v = g.observe(Reading(None, InvalidKeyError("gone"), seq=next(_seq)))
    assert v is not None and v.reason == "vastcap_invalid_key"
    assert not g.paused  # a stop ends the pause
    capped = guard(on_low_balance="pause", max_spend="1")
    assert actions(capped, [ok("5"), ok("3.5")]) == ["ok", "stop:vastcap_budget_exceeded"]


def test_pause_mode_counts_failed_checks_while_paused() -> None:
    g = guard(on_low_balance="pause", max_failures=2)
    assert actions(g, [ok("1"), ok("0"), down(), down()]) == ["ok", "pause", "failed", "stop:vastcap_api_unavailable"]


def test_a_pause_longer_than_the_timeout_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    import vastcap_guard.guard as guard_module

    now = [1000.0]
    monkeypatch.setattr(guard_module.time, "monotonic", lambda: now[0])
    g = guard(on_low_balance="pause", pause_timeout=60)
    assert actions(g, [ok("1"), ok("0")]) == ["ok", "pause"]
    now[0] += 59
    assert g.expire_pause() is None
    now[0] += 2
    error = g.expire_pause()
    assert isinstance(error, LowBalanceError) and g.tripped is error
    assert "60 s of pause" in str(error)


def test_a_remote_low_balance_stop_pauses_a_pausing_member() -> None:
    g = guard(on_low_balance="pause")
    g.observe(ok("1"))
    stop = Reading(None, LowBalanceError("fleet", balance=Decimal(0), minimum=Decimal(5)), seq=next(_seq),
                   remote_stop=True)
    v = g.observe(stop)
    assert v is not None and v.action is Action.PAUSE and g.tripped is None
    assert isinstance(v.error, LowBalanceError) and v.error.minimum == Decimal("0.001")
    closing = guard()
    closing.observe(ok("1"))
    v = closing.observe(Reading(None, LowBalanceError("fleet", balance=Decimal(0), minimum=Decimal(5)),
                                seq=next(_seq), remote_stop=True))
    assert v is not None and v.reason == "vastcap_low_balance"


def test_a_spend_the_balance_cannot_pay_pauses_until_a_reading_shows_it_can() -> None:
    g = guard(on_low_balance="pause")
    g.observe(ok("0.005"))
    assert g.reserve(Decimal("0.002")) == Decimal("0.003")
    with pytest.raises(LowBalanceError) as info:
        g.reserve(Decimal("0.003"))  # 0.005 - 0.002 - 0.003 = 0 < 0.001
    v = g.pause_for_spend(info.value, Decimal("0.003"))
    assert v is not None and v.action is Action.PAUSE and v.reading is None and g.paused
    assert g.resume_balance == Decimal("0.006")  # minimum + reserved + the spend that paused
    assert g.pause_for_spend(info.value, Decimal("0.003")) is None  # already paused
    with pytest.raises(LowBalanceError):
        g.reserve(Decimal("0.0001"))  # nothing is spent while paused
    # the reserved spend shows: $0.003 left is above the minimum, but cannot pay the $0.003
    assert actions(g, [ok("0.003"), ok("0.0039")]) == ["hold", "hold"]
    assert actions(g, [ok("0.004")]) == ["resume"]
    assert g.reserve(Decimal("0.003")) == Decimal("0.001")


def test_a_spend_pause_is_a_close_mode_no_op() -> None:
    g = guard()
    g.observe(ok("1"))
    error = g.low_balance_error(Decimal(0), projected=True)
    assert g.pause_for_spend(error, Decimal(2)) is None and not g.paused


def test_a_spend_pause_that_times_out_says_what_balance_was_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    import vastcap_guard.guard as guard_module

    now = [1000.0]
    monkeypatch.setattr(guard_module.time, "monotonic", lambda: now[0])
    g = guard(on_low_balance="pause", pause_timeout=10)
    g.observe(ok("0.02"))
    error = g.low_balance_error(Decimal("0.0"), projected=True)
    assert g.pause_for_spend(error, Decimal("0.02")) is not None
    now[0] += 11
    timed_out = g.expire_pause()
    assert isinstance(timed_out, LowBalanceError)
    assert "stayed below the $0.021 needed to pay for the waiting spend and keep the minimum of $0.001" \
        in str(timed_out)
    assert "for 10 s of pause (balance $0.02)" in str(timed_out)
