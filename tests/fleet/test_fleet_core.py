"""Fleet mode with a real redis-server and several real processes against the sandbox."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from fleet_support import REDIS, Member, free_port

from vastcap_guard import ConfigError, GuardConfig
from vastcap_guard.sandbox import LocalRedis, Sandbox

KEY = "vc_FLEETKEY_s3cr3t_a1b2c3d4e5"


@pytest.fixture
def sb() -> Sandbox:
    with Sandbox({KEY: "10"}) as s:
        yield s


def member(sb: Sandbox, redis_url: str | None, **opts: object) -> Member:
    return Member(api_url=sb.url, key=KEY, shared_state=redis_url, **opts)


def test_one_poll_per_interval_for_the_whole_fleet(sb: Sandbox, redis_url: str) -> None:
    members = [member(sb, redis_url, interval=0.5, duration=4) for _ in range(4)]
    for m in members:
        m.wait()
    fleet_calls = sb.call_count("getBalance")
    sb.reset_calls()
    solo = [member(sb, None, interval=0.5, duration=4) for _ in range(4)]
    for m in solo:
        m.wait()
    solo_calls = sb.call_count("getBalance")
    for m in members:
        assert m.exit_reason is None, m.stderr
        assert len(m.verdicts) >= 4  # every member kept getting readings
        assert all(v["fleet"] for v in m.verdicts[1:])
    # ~8 periodic polls plus up to one pre-flight per member, against ~4 x 8 on their own
    print("calls: fleet", fleet_calls, "solo", solo_calls)
    assert fleet_calls <= 4 / 0.5 + 4 + 3, fleet_calls
    assert solo_calls >= 2 * fleet_calls, (solo_calls, fleet_calls)


def test_a_stop_reaches_every_member_whatever_its_interval(sb: Sandbox, redis_url: str) -> None:
    # the others poll once a minute: only the fleet can tell them in time
    others = [member(sb, redis_url, interval=60, duration=30).joined() for _ in range(3)]
    strict = member(sb, redis_url, interval=0.3, min_balance="5", duration=30)
    threading.Timer(1.0, sb.set_balance, (KEY, "3")).start()
    strict.wait()
    assert strict.exit_reason == "vastcap_low_balance"
    stopped_at = strict.verdicts[-1]["t"]
    for m in others:
        m.wait()
        assert m.exit_reason == "vastcap_low_balance", m.lines
        last = m.verdicts[-1]
        assert last["remote"] is True
        assert last["t"] - stopped_at < 5  # the stop came from the fleet, not a 60 s poll


def test_a_stop_published_before_a_member_started_does_not_stop_it(sb: Sandbox, redis_url: str) -> None:
    strict = member(sb, redis_url, interval=0.3, min_balance="50", duration=10).wait()
    assert strict.exit_reason == "vastcap_low_balance"
    later = member(sb, redis_url, interval=0.3, duration=2).wait()
    assert later.exit_reason is None, later.lines


def test_poller_hand_over_after_the_poller_is_killed(sb: Sandbox, redis_url: str) -> None:
    first = member(sb, redis_url, interval=0.3, timeout=0.5, duration=30).joined()  # it takes the lease
    time.sleep(0.5)
    rest = [member(sb, redis_url, interval=0.3, timeout=0.5, duration=8).joined() for _ in range(2)]
    time.sleep(0.5)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    killed_at = time.time()
    for m in rest:
        m.wait()
        assert m.exit_reason is None, m.stderr
        after = [v for v in m.verdicts if v["t"] > killed_at + 4]
        assert after, "no readings after the hand-over"
    assert any(v["leading"] for m in rest for v in m.verdicts if v["t"] > killed_at), "nobody took the lease"


def test_redis_down_each_member_polls_alone_with_one_warning(sb: Sandbox) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    m = member(sb, dead, interval=0.3, duration=2.5).wait()
    assert m.exit_reason is None
    assert len(m.verdicts) >= 4 and all(v["action"] == "ok" for v in m.verdicts)
    warnings = [ln for ln in m.stderr.splitlines() if "unreachable" in ln]
    assert len(warnings) == 1 and "Traceback" not in m.stderr


def test_redis_lost_mid_run_never_stops_the_job(sb: Sandbox, tmp_path: object) -> None:
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    redis = LocalRedis(str(tmp_path)).start()
    try:
        m = member(sb, redis.url, interval=0.3, duration=4).joined()
        time.sleep(0.5)
        redis.kill()
        m.wait()
    finally:
        redis.kill()
    assert m.exit_reason is None
    late = [v for v in m.verdicts if v["action"] == "ok"]
    assert len(late) >= 6
    assert "Traceback" not in m.stderr


def test_spend_is_fleet_wide(sb: Sandbox, redis_url: str) -> None:
    first = member(sb, redis_url, interval=0.3, duration=20).joined()
    time.sleep(0.3)
    sb.set_balance(KEY, "9.96")  # the fleet spent 0.04 before the second member started
    time.sleep(1.0)
    second = member(sb, redis_url, interval=0.3, max_spend="0.05", duration=20).joined()
    time.sleep(0.5)
    sb.set_balance(KEY, "9.94")  # 0.06 since the fleet began; 0.02 since the second member began
    second.wait()
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(10)
    assert second.exit_reason == "vastcap_budget_exceeded", second.lines


def test_redis_keys_hold_no_secret(sb: Sandbox, redis_url: str) -> None:
    import redis

    member(sb, redis_url, interval=0.3, duration=1.5).wait()
    r = redis.Redis.from_url(redis_url)
    keys = r.keys("*")
    assert keys and all(k.startswith(b"vastcap-guard:") for k in keys)
    dump = b" ".join(keys) + b" ".join(v for k in keys if r.type(k) == b"string" for v in [r.get(k) or b""])
    assert KEY.encode() not in dump


def test_bad_shared_state_url_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="VASTCAP_SHARED_STATE"):
        GuardConfig.build(KEY, environ={}, shared_state="http://x", names={"shared_state": "VASTCAP_SHARED_STATE"})
    cfg = GuardConfig.build(KEY, environ={}, shared_state="redis://user:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(cfg)


def test_a_job_started_after_a_top_up_runs(sb: Sandbox, redis_url: str) -> None:
    sb.set_balance(KEY, "0.0005")
    first = member(sb, redis_url, interval=0.3, duration=10).wait()
    assert first.exit_reason == "vastcap_low_balance"
    sb.set_balance(KEY, "50")
    # the fleet's last reading ($0.0005) is still in Redis: it must not refuse the new job
    later = member(sb, redis_url, interval=30, duration=1).wait()
    assert later.exit_reason is None, later.lines
    assert float(later.verdicts[0]["balance"]) == 50


def test_another_members_api_failure_never_stops_a_running_member(sb: Sandbox, redis_url: str) -> None:
    running = member(sb, redis_url, interval=0.3, max_failures=0, duration=6)
    deadline = time.monotonic() + 30  # its pre-flight call was answered before the outage (slow machines)
    while sb.call_count("getBalance") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    sb.fault("getBalance", "status", status=500, times=6)  # a short outage
    newcomer = member(sb, redis_url, interval=0.3, timeout=0.3, duration=3).wait()
    running.wait()
    assert running.exit_reason is None, running.lines  # max_failures=0: it rides out the outage
    assert newcomer.exit_reason in (None, "vastcap_api_unavailable")  # its own pre-flight policy


def test_spend_across_a_failed_check_is_not_lost(sb: Sandbox, redis_url: str) -> None:
    m = member(sb, redis_url, interval=0.3, max_spend="1", duration=15).joined()
    time.sleep(0.5)
    sb.fault("getBalance", "status", status=500, times=3)  # one failed check (three attempts)
    time.sleep(0.1)
    sb.set_balance(KEY, "8")
    m.wait()
    assert m.exit_reason == "vastcap_budget_exceeded", m.lines


def test_the_fleet_polls_at_its_shortest_interval(sb: Sandbox, redis_url: str) -> None:
    slow = member(sb, redis_url, interval=2, duration=12).joined()
    time.sleep(1)  # it holds the lease, polling every 2 s
    fast = member(sb, redis_url, interval=0.3, duration=4).wait()
    slow.proc.send_signal(signal.SIGTERM)
    slow.wait()
    # the fast member got readings at its own pace, not the slow leader's (2 s: about 2 readings)
    assert len(fast.verdicts) >= 6, fast.lines


def test_a_malformed_fleet_message_does_not_end_the_listener(sb: Sandbox, redis_url: str) -> None:
    import redis

    from vastcap_guard._secrets import key_id

    relaxed = member(sb, redis_url, interval=60, duration=30).joined()
    channel = f"vastcap-guard:{key_id(KEY, sb.url)}:events"
    r = redis.Redis.from_url(redis_url)
    for junk in (b"not json", b'{"type": "reading", "at": null}', b'{"type": "stop", "reason": 5}', b"[]"):
        r.publish(channel, junk)
    strict = member(sb, redis_url, interval=0.3, min_balance="20", duration=10).wait()
    assert strict.exit_reason == "vastcap_low_balance"
    relaxed.wait()
    assert relaxed.exit_reason == "vastcap_low_balance", relaxed.lines


def _lease_holder(sb: Sandbox, redis_url: str) -> str | None:
    """The fleet member holding the poller lease of this test's account, if any."""
    import redis

    from vastcap_guard._secrets import key_id

    r = redis.Redis.from_url(redis_url)
    try:
        raw = r.get(f"vastcap-guard:{key_id(KEY, sb.url)}:lease")
        return raw.decode() if raw is not None else None
    finally:
        r.close()


def test_a_killed_poller_is_replaced_on_the_lease_heartbeat_not_the_poll_schedule(sb: Sandbox, redis_url: str) -> None:
    # issue 13: with a 60 s interval the lease used to outlive a SIGKILLed poller for 2 x 60 + 3 x timeout
    # seconds, and nobody checked the balance meanwhile. Now the lease lives 3 s, renewed every second.
    first = member(sb, redis_url, interval=60, timeout=1, duration=120)
    deadline = time.monotonic() + 30
    while _lease_holder(sb, redis_url) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    holder = _lease_holder(sb, redis_url)
    assert holder is not None, "the first member never took the lease"
    rest = [member(sb, redis_url, interval=60, timeout=1, duration=60).joined() for _ in range(2)]
    time.sleep(1.0)  # they joined; the first still holds the lease
    assert _lease_holder(sb, redis_url) == holder
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    deadline = time.monotonic() + 20  # far below the old 2 x 60 + 3 s (a bound, not a timing)
    while _lease_holder(sb, redis_url) in (None, holder) and time.monotonic() < deadline:
        time.sleep(0.1)
    new = _lease_holder(sb, redis_url)
    for m in rest:
        m.proc.send_signal(signal.SIGTERM)
        m.wait()
    assert new not in (None, holder), "no other member took over the lease of the killed poller"


def test_a_graceful_exit_hands_the_lease_over(sb: Sandbox, redis_url: str) -> None:
    first = member(sb, redis_url, interval=60, timeout=1, duration=3)
    deadline = time.monotonic() + 30
    while _lease_holder(sb, redis_url) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    holder = _lease_holder(sb, redis_url)
    second = member(sb, redis_url, interval=60, timeout=1, duration=30)
    first.wait()
    deadline = time.monotonic() + 20
    while _lease_holder(sb, redis_url) in (None, holder) and time.monotonic() < deadline:
        time.sleep(0.1)
    new = _lease_holder(sb, redis_url)
    second.proc.send_signal(signal.SIGTERM)
    second.wait()
    assert holder is not None and new not in (None, holder)
