"""One fleet member for the tests: a guarded 'job' in its own process, printing a JSON line per verdict.

Usage: fleet_member.py CONFIG_JSON  (keys: api_url, key, shared_state, interval, min_balance, max_spend, duration)
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from vastcap_guard import Guard, GuardConfig, subscribe

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def main() -> int:
    opts = json.loads(sys.argv[1])
    cfg = GuardConfig.build(
        opts["key"], api_url=opts["api_url"], interval=opts.get("interval", 0.5), timeout=opts.get("timeout", 1),
        min_balance=opts.get("min_balance", "0.001"), max_spend=opts.get("max_spend"),
        shared_state=opts.get("shared_state"), max_failures=opts.get("max_failures", 3),
        require_preflight=opts.get("require_preflight", True), environ={},
    )
    guard = Guard(cfg)
    done = threading.Event()
    lock = threading.Lock()
    sub = None

    def emit(**kw: object) -> None:
        with lock:
            print(json.dumps(kw, default=str), flush=True)

    def on_reading(reading: object) -> None:
        verdict = guard.observe(reading)  # type: ignore[arg-type]
        if verdict is None:
            return
        fleet = sub._poller.fleet if sub is not None else None
        emit(action=verdict.action.value, reason=verdict.reason, balance=guard.balance, spent=guard.spent,
             leading=bool(fleet and fleet.leading), fleet=bool(fleet and fleet.active),
             remote=getattr(reading, "remote_stop", False), t=time.time())
        if verdict.stop:
            done.set()

    sub = subscribe(cfg, on_reading, guard=guard)
    emit(event="started", t=time.time())
    first = sub.check(max_age=cfg.interval).result(30)
    on_reading(first)
    done.wait(opts.get("duration", 5))
    emit(event="exit", reason=guard.tripped.reason if guard.tripped else None, t=time.time())
    sub.close(wait=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
