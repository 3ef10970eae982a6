"""One fleet member for the fleet benchmark: a guarded job (core level) in its own process.

Usage: ``python bench/fleet_member.py OPTIONS_JSON`` (keys: api_url, key, shared_state, interval,
min_balance, timeout). Prints one JSON line per verdict (``t`` is ``time.time()``) and runs until its
guard stops or its stdin is closed. Started by ``bench/run.py``.

This is what every guarded job does (Scrapy extension, Playwright guard): subscribe to the shared
poller with its guard, observe every reading, stop on a stop verdict.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

from vastcap_guard import Guard, GuardConfig, subscribe

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def main() -> int:
    opts = json.loads(sys.argv[1])
    cfg = GuardConfig.build(
        opts["key"], api_url=opts["api_url"], interval=opts.get("interval", 0.5), timeout=opts.get("timeout", 2),
        min_balance=opts.get("min_balance", "0.001"), shared_state=opts.get("shared_state"), environ={},
    )
    guard = Guard(cfg)
    done = threading.Event()
    lock = threading.Lock()
    subs: list[Any] = []

    def emit(**kw: object) -> None:
        with lock:
            print(json.dumps(kw, default=str), flush=True)

    def on_reading(reading: Any) -> None:
        with lock:
            verdict = guard.observe(reading)
        if verdict is None:
            return
        fleet = subs[0]._poller.fleet if subs else None
        emit(action=verdict.action.value, reason=verdict.reason, stop=verdict.stop,
             remote=getattr(reading, "remote_stop", False), leading=bool(fleet and fleet.leading),
             fleet=bool(fleet and fleet.active), t=time.time())
        if verdict.stop:
            done.set()

    sub = subscribe(cfg, on_reading, guard=guard)
    subs.append(sub)
    on_reading(sub.check(max_age=cfg.interval).result(60))

    def stdin_closed() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=stdin_closed, daemon=True).start()
    done.wait()
    emit(event="exit", reason=guard.tripped.reason if guard.tripped else None, t=time.time())
    sub.close(wait=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
