"""The shared poller against the sandbox: one call per interval however many jobs watch a key."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from core_keys import KEY, LOW_KEY

from vastcap_guard import GuardConfig, Reading, subscribe
from vastcap_guard.poller import active_pollers
from vastcap_guard.sandbox import Sandbox


def cfg(sb: Sandbox, key: str = KEY, interval: float = 0.3) -> GuardConfig:
    return GuardConfig.build(key, api_url=sb.url, interval=interval, timeout=2, environ={})


def wait_for(cond: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_check_returns_a_fresh_reading(sandbox: Sandbox) -> None:
    with subscribe(cfg(sandbox, interval=60)) as sub:
        reading = sub.check().result(5)
    assert reading.ok and reading.balance == Decimal("10.25")


def test_ten_subscribers_share_one_poll(sandbox: Sandbox) -> None:
    got: dict[int, list[Reading]] = {i: [] for i in range(10)}
    subs = [subscribe(cfg(sandbox), got[i].append) for i in range(10)]
    try:
        assert wait_for(lambda: all(len(v) >= 5 for v in got.values()))
    finally:
        for s in subs:
            s.close(wait=5)
    calls = sandbox.call_count("getBalance")
    # every subscriber saw the same readings: one call per reading, not one per subscriber
    seqs = [r.seq for r in got[0]]
    assert all([r.seq for r in got[i]][:5] == seqs[:5] for i in range(10))
    assert calls <= len(seqs) + 1
    assert active_pollers() == 0


def test_concurrent_checks_coalesce(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "latency", delay=0.3)
    subs = [subscribe(cfg(sandbox, interval=60)) for _ in range(20)]
    try:
        futures = [s.check() for s in subs]
        readings = [f.result(5) for f in futures]
    finally:
        for s in subs:
            s.close(wait=5)
    assert all(r.ok for r in readings)
    assert sandbox.call_count("getBalance") <= 2


def test_max_age_reuses_a_young_reading(sandbox: Sandbox) -> None:
    with subscribe(cfg(sandbox, interval=60)) as a, subscribe(cfg(sandbox, interval=60)) as b:
        first = a.check().result(5)
        again = b.check(max_age=30).result(5)
        assert again.seq == first.seq
        newer = b.check(max_age=0).result(5)
        assert newer.seq > first.seq
    assert sandbox.call_count("getBalance") == 2


def test_different_keys_poll_separately(sandbox: Sandbox) -> None:
    with subscribe(cfg(sandbox, KEY, 60)) as a, subscribe(cfg(sandbox, LOW_KEY, 60)) as b:
        assert a.check().result(5).balance == Decimal("10.25")
        assert b.check().result(5).balance == Decimal("0.0005")
        assert active_pollers() == 2


def test_failures_are_readings_not_exceptions(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "status", status=500)
    c = GuardConfig.build(KEY, api_url=sandbox.url, interval=60, timeout=0.5, environ={})
    with subscribe(c) as sub:
        reading = sub.check().result(10)
    assert not reading.ok and reading.error is not None and reading.error.reason == "vastcap_api_unavailable"


def test_callback_errors_do_not_kill_the_poller(sandbox: Sandbox) -> None:
    seen: list[Reading] = []

    def bad(r: Reading) -> None:
        seen.append(r)
        raise RuntimeError("boom")

    with subscribe(cfg(sandbox, interval=0.1), bad):
        assert wait_for(lambda: len(seen) >= 3)


def test_last_subscriber_out_stops_the_thread(sandbox: Sandbox) -> None:
    before = {t.ident for t in threading.enumerate()}
    sub = subscribe(cfg(sandbox, interval=0.1))
    sub.check().result(5)
    sub.close(wait=5)
    extra = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("vastcap-guard-poller")]
    assert extra == []
    assert active_pollers() == 0


def test_no_key_reading_is_an_error_not_a_crash(sandbox: Sandbox) -> None:
    c = GuardConfig.build(None, api_url=sandbox.url, environ={})
    with subscribe(c) as sub:
        r = sub.check().result(5)
    assert r.error is not None and r.error.reason == "vastcap_invalid_key"
    assert sandbox.call_count() == 0


def test_repr_masks_key(sandbox: Sandbox) -> None:
    with subscribe(cfg(sandbox)) as sub:
        assert KEY not in repr(sub)
