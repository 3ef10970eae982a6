"""The guarded-run core (vastcap_guard.run.GuardedRun) against the sandbox, without a framework.

Also the defects of the core that issue 15 found: forked children, sequential runs, the interval
floor, input edges.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from core_keys import KEY, LOW_KEY

from vastcap_guard import ConfigError, GuardConfig, GuardError, LowBalanceError
from vastcap_guard.guard import Action, Verdict
from vastcap_guard.poller import active_pollers
from vastcap_guard.run import GuardedRun
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.wording import PYTHON_NAMES, Wording

WORDS = Wording(job="test job", names=PYTHON_NAMES)
logger = logging.getLogger("vastcap_guard.test")


def config(sb: Sandbox, key: str = KEY, **kw: Any) -> GuardConfig:
    kw.setdefault("interval", 0.3)
    kw.setdefault("timeout", 2)
    return GuardConfig.build(key, api_url=sb.url, environ={}, **kw)


def new_run(cfg: GuardConfig, **kw: Any) -> GuardedRun:
    return GuardedRun(cfg, WORDS, logger=logger, **kw)


def wait_for(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


# -- pre-flight, readings, stop -------------------------------------------------------------------
def test_preflight_admits_a_funded_account_and_logs_it(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vastcap_guard")
    run = new_run(config(sandbox))
    run.start_blocking()
    try:
        assert run.balance == Decimal("10.25") and run.tripped is None
    finally:
        run.close()
    assert "VastCap balance $10.25" in caplog.text and KEY not in caplog.text


def test_preflight_refusal_raises_reports_once_and_stops_checking(sandbox: Sandbox,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    stops: list[tuple[str, bool]] = []
    run = new_run(config(sandbox, LOW_KEY, interval=0.1), on_stop=lambda e, at_start: stops.append((e.reason, at_start)))
    with pytest.raises(LowBalanceError):
        run.start_blocking()
    assert stops == [("vastcap_low_balance", True)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "did not start the test job [vastcap_low_balance]" in errors[0]
    time.sleep(0.5)  # several intervals: a refused run makes no more calls
    assert sandbox.call_count("getBalance") == 1
    assert active_pollers() == 0


def test_readings_reach_the_adapters_loop_and_a_stop_is_reported_once(sandbox: Sandbox) -> None:
    async def main() -> tuple[list[Verdict], list[str], bool]:
        loop = asyncio.get_running_loop()
        verdicts: list[Verdict] = []
        stops: list[str] = []
        on_loop: list[bool] = []

        def on_verdict(v: Verdict) -> None:
            verdicts.append(v)
            on_loop.append(asyncio.get_running_loop() is loop)

        run = new_run(config(sandbox), deliver=loop.call_soon_threadsafe, on_verdict=on_verdict,
                      on_stop=lambda e, at_start: stops.append(e.reason))
        await run.start_async()
        sandbox.set_balance(KEY, 0)
        for _ in range(200):
            if stops:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.7)  # more readings after the stop change nothing
        run.close()
        return verdicts, stops, all(on_loop)

    verdicts, stops, all_on_loop = asyncio.run(main())
    assert stops == ["vastcap_low_balance"]
    assert [v.action for v in verdicts].count(Action.STOP) == 1
    assert all_on_loop, "a verdict was decided outside the adapter's loop"


def test_check_deadline_bounds_a_silent_api(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "hang", delay=30)
    cfg = config(sandbox, timeout=0.2, require_preflight=False)
    run = new_run(cfg)
    started = time.monotonic()
    run.start_blocking()  # a failed pre-flight is tolerated here
    run.close()
    assert time.monotonic() - started < cfg.check_deadline + 5
    assert run.guard.check_failures == 1


# -- session starts ---------------------------------------------------------------------------------
def test_session_starts_are_admitted_on_the_latest_reading(sandbox: Sandbox) -> None:
    run = new_run(config(sandbox, interval=0.5))
    run.start_blocking()
    try:
        calls = sandbox.call_count("getBalance")
        for _ in range(20):
            assert run.admission() is None  # admitted at once: no wait, no extra call
        assert sandbox.call_count("getBalance") <= calls + 1
    finally:
        run.close()


def test_a_start_after_a_stop_is_refused(sandbox: Sandbox) -> None:
    run = new_run(config(sandbox))
    run.start_blocking()
    try:
        sandbox.set_balance(KEY, 0)
        assert wait_for(lambda: run.tripped is not None)
        with pytest.raises(LowBalanceError):
            run.admit_blocking()
    finally:
        run.close()


# -- spending ---------------------------------------------------------------------------------------
def test_ensure_funds_reserves_then_refuses_and_stops(sandbox: Sandbox) -> None:
    sandbox.set_balance(KEY, "0.005")
    run = new_run(config(sandbox))
    run.start_blocking()
    try:
        assert run.ensure_funds("0.002") == Decimal("0.003")
        with pytest.raises(LowBalanceError):
            run.ensure_funds("0.003")  # would leave 0, below the minimum
        assert isinstance(run.tripped, LowBalanceError)
    finally:
        run.close()


def test_ensure_funds_in_pause_mode_pauses_instead_of_stopping(sandbox: Sandbox,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    sandbox.set_balance(KEY, "0.005")
    verdicts: list[Verdict] = []
    stops: list[str] = []
    run = new_run(config(sandbox, interval=60, on_low_balance="pause"), on_verdict=verdicts.append,
                  on_stop=lambda e, at_start: stops.append(e.reason))
    run.start_blocking()
    try:
        assert run.ensure_funds("0.002") == Decimal("0.003")
        with pytest.raises(LowBalanceError):
            run.ensure_funds("0.003")  # would leave 0: the job pauses, it does not stop
        assert run.paused and run.tripped is None and stops == []
        assert [v.action for v in verdicts] == [Action.OK, Action.PAUSE]
        (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        # how to resume: the minimum, the $0.002 reserved and the $0.003 that paused the job
        assert "paused the test job [vastcap_low_balance]" in warning and "at or above $0.006" in warning
        assert "pause_timeout" in warning
        with pytest.raises(LowBalanceError):
            run.ensure_funds("0.003")  # still paused: no second pause, no second line
        assert [v.action for v in verdicts] == [Action.OK, Action.PAUSE]
        sandbox.set_balance(KEY, "1")  # a top-up
        run.take(run.request(max_age=None).result(10))
        assert not run.paused and verdicts[-1].action is Action.RESUME
        assert run.ensure_funds("0.003") == Decimal("0.995")
    finally:
        run.close()


def test_closing_reading_only_when_spend_is_unseen(sandbox: Sandbox) -> None:
    run = new_run(config(sandbox, interval=60))
    run.start_blocking()
    try:
        assert run.closing_reading() is None  # nothing reserved: no extra call
        run.ensure_funds("0.25")
        sandbox.set_balance(KEY, "10.00")  # the debit lands after the last reading
        future = run.closing_reading()
        assert future is not None
        run.settle(future.result(10))
        assert run.guard.spent == Decimal("0.25") and run.guard.pending_spend == 0
    finally:
        run.close()


def test_snapshot_is_rounded_for_people(sandbox: Sandbox) -> None:
    run = new_run(config(sandbox, min_balance="0"))
    for i, balance in enumerate(["10", "10", "10"]):
        run.guard.observe(__import__("vastcap_guard").Reading(Decimal(balance), monotonic=60.0 * i, seq=i + 1))
    snap = run.snapshot()
    assert snap["spend_per_minute"] == Decimal(0) and "E" not in str(snap["spend_per_minute"])
    for i, balance in enumerate(["10", "9.99999999999", "9.98888888888"]):
        run.guard.observe(__import__("vastcap_guard").Reading(Decimal(balance), monotonic=1000 + 7.0 * i,
                                                              seq=10 + i))
    rate = run.snapshot()["spend_per_minute"]
    assert isinstance(rate, Decimal) and rate.as_tuple().exponent >= -4


# -- issue 15: sequential runs reuse a reading; the interval floor -------------------------------------
def test_sequential_runs_reuse_the_last_reading_for_an_interval(sandbox: Sandbox) -> None:
    cfg = config(sandbox, interval=60)
    for _ in range(50):  # a decorated function called per item
        run = new_run(cfg)
        run.start_blocking()
        run.close()
    assert sandbox.call_count("getBalance") == 1


def test_sequential_runs_never_reuse_a_stale_or_stopping_reading(sandbox: Sandbox) -> None:
    cfg = config(sandbox, interval=60)
    run = new_run(cfg)
    run.start_blocking()
    run.close()
    sandbox.set_balance(KEY, 0)
    # the kept reading says $10.25, which would not stop the run: it is reused (within the interval)
    run = new_run(cfg)
    run.start_blocking()
    run.close()
    assert sandbox.call_count("getBalance") == 1
    # a refusal is always confirmed by a fresh reading, and is not kept for the next run
    low = config(sandbox, interval=60, min_balance="20")
    for _ in range(2):
        run = new_run(low)
        with pytest.raises(LowBalanceError):
            run.start_blocking()
    assert sandbox.call_count("getBalance") == 3


def test_an_interval_below_the_floor_is_raised_with_a_warning(sandbox: Sandbox,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    cfg = GuardConfig.build(KEY, api_url=sandbox.url, interval=0.01, environ={},
                            names={"interval": "VASTCAP_CHECK_INTERVAL"})
    assert cfg.interval == 0.1
    assert "VASTCAP_CHECK_INTERVAL of 0.01s is below the floor of 0.1s" in caplog.text
    run = new_run(cfg)
    run.start_blocking()
    time.sleep(1.05)
    run.close()
    assert sandbox.call_count("getBalance") <= 12  # about 10 a second at most, not 23+


@pytest.mark.parametrize(("field", "value"), [("interval", 9.3e9), ("timeout", 1e10), ("interval", "1e400"),
                                              ("pause_timeout", 1e12)])
def test_absurd_durations_are_config_errors(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        GuardConfig.build(KEY, environ={}, **{field: value})  # type: ignore[arg-type]
    assert info.value.setting == field


# -- issue 15: input edges ----------------------------------------------------------------------------
def test_a_byte_order_mark_is_not_part_of_the_key() -> None:
    assert GuardConfig.build("\ufeff" + KEY + "\n", environ={}).api_key == KEY
    assert GuardConfig.build(None, environ={"VASTCAP_API_KEY": "\ufeff" + KEY}).api_key == KEY


def test_credentials_in_the_api_url_are_never_shown(sandbox: Sandbox) -> None:
    secret_url = sandbox.url.replace("http://", "http://user:hunter2secret@")
    cfg = GuardConfig.build(KEY, api_url=secret_url, environ={})
    assert "hunter2secret" not in repr(cfg)
    with pytest.raises(ConfigError) as info:
        GuardConfig.build(KEY, api_url="ftp://user:hunter2secret@example.invalid/x", environ={})
    assert "hunter2secret" not in str(info.value)
    sandbox.stop()  # unreachable: the error names the URL
    run = new_run(GuardConfig.build(KEY, api_url=secret_url, timeout=0.2, environ={}))
    with pytest.raises(GuardError) as err:
        run.start_blocking()
    assert "hunter2secret" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_a_bad_url_from_the_environment_names_the_environment_variable() -> None:
    with pytest.raises(ConfigError) as info:
        GuardConfig.build(KEY, environ={"VASTCAP_API_URL": "not a url"}, names={"api_url": "--api-url"})
    assert "VASTCAP_API_URL environment variable" in str(info.value) and "--api-url" not in str(info.value)


def test_a_refused_key_says_where_it_came_from(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    scrapy_words = Wording(job="crawl", names={"api_key": "VASTCAP_API_KEY"}, style="setting")
    for cfg, source in ((GuardConfig.build("vc_unknown_key_000000001", api_url=sandbox.url, environ={}),
                         "from the VASTCAP_API_KEY setting"),
                        (GuardConfig.build(None, api_url=sandbox.url, environ={"VASTCAP_API_KEY": "vc_unknown_2_00000002"}),
                         "from the VASTCAP_API_KEY environment variable")):
        caplog.clear()
        run = GuardedRun(cfg, scrapy_words, logger=logger)
        with pytest.raises(GuardError):
            run.start_blocking()
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and source in errors[0], errors


# -- issue 15: fork -------------------------------------------------------------------------------------
def _child_check(url: str, queue: Any) -> None:
    run = GuardedRun(GuardConfig.build(KEY, api_url=url, interval=0.3, timeout=2, environ={}), WORDS, logger=logger)
    try:
        run.start_blocking()
        queue.put(("ok", str(run.balance), run.guard.check_failures))
    except GuardError as exc:
        queue.put(("refused", exc.reason, run.guard.check_failures))
    finally:
        run.close()


def _child_admits(run: GuardedRun, queue: Any) -> None:
    try:
        for _ in range(3):
            run.admit_blocking()
            time.sleep(0.4)
        queue.put(("ok", str(run.balance), run.guard.check_failures))
    except GuardError as exc:
        queue.put(("refused", exc.reason, run.guard.check_failures))


@pytest.mark.parametrize("balance", ["10", "0"])
def test_a_child_forked_inside_a_run_is_guarded_for_real(sandbox: Sandbox, balance: str) -> None:
    ctx = multiprocessing.get_context("fork")
    run = new_run(config(sandbox))
    run.start_blocking()  # the parent's poller runs, with a reading of $10.25
    try:
        sandbox.set_balance(KEY, balance)
        queue = ctx.Queue()
        child = ctx.Process(target=_child_admits, args=(run, queue))
        child.start()
        outcome = queue.get(timeout=30)
        child.join(10)
    finally:
        run.close()
    if balance == "10":
        # no false stop, no failed check, and the child read the balance itself ($10, not the parent's $10.25)
        assert outcome[0] == "ok" and Decimal(outcome[1]) == 10 and outcome[2] == 0, outcome
    else:
        assert outcome[:2] == ("refused", "vastcap_low_balance"), outcome


def test_a_new_run_in_a_forked_child_polls_on_its_own(sandbox: Sandbox) -> None:
    ctx = multiprocessing.get_context("fork")
    parent = new_run(config(sandbox))
    parent.start_blocking()
    try:
        queue = ctx.Queue()
        child = ctx.Process(target=_child_check, args=(sandbox.url, queue))
        child.start()
        outcome = queue.get(timeout=30)
        child.join(10)
    finally:
        parent.close()
    assert outcome == ("ok", "10.25", 0)


def test_fork_while_another_thread_holds_the_registry_lock(sandbox: Sandbox) -> None:
    # a child forked while a thread joins a poller must not inherit a held lock (deadlock)
    ctx = multiprocessing.get_context("fork")
    stop = threading.Event()

    def churn() -> None:
        cfg = config(sandbox, interval=60)
        while not stop.is_set():
            run = new_run(cfg)
            run.start_blocking()
            run.close()

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        for _ in range(5):
            queue = ctx.Queue()
            child = ctx.Process(target=_child_check, args=(sandbox.url, queue))
            child.start()
            assert queue.get(timeout=30)[0] == "ok"
            child.join(10)
    finally:
        stop.set()
        t.join(10)
