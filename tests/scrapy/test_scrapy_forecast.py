"""The burn-rate forecast in a real crawl: stats, the WARNING line and the ``balance_forecast`` signal.

The money is spent the way a spider spends it: tasks created and solved through the sandbox's
createTask / getTaskResult (the sandbox charges each solved task), from a thread, while the crawl runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from scrapy_crawl import KEY, MASKED, run_crawl, wait_for

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

PRICE = Decimal("0.05")


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}, price=str(PRICE)) as sandbox:
        yield sandbox


class Solver(threading.Thread):
    """Solve one task every ``every`` seconds through the sandbox API (each solve costs PRICE)."""

    def __init__(self, sb: Sandbox, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.sb, self.every = sb, every
        self.stop = threading.Event()
        self.solved = 0

    def run(self) -> None:
        with requests.Session() as http:
            while not self.stop.wait(self.every):
                task = http.post(f"{self.sb.url}/createTask", timeout=5, json={
                    "clientKey": KEY, "task": {"type": "RecaptchaV2TaskProxyless", "websiteURL": "http://x/",
                                               "websiteKey": "k"}}).json()
                if "taskId" not in task:
                    continue
                result = http.post(f"{self.sb.url}/getTaskResult", timeout=5,
                                   json={"clientKey": KEY, "taskId": task["taskId"]}).json()
                if result.get("status") == "ready":
                    self.solved += 1


def polls_after(sb: Sandbox, n: int, proc: Any) -> None:
    calls = sb.call_count("getBalance")
    wait_for(lambda: sb.call_count("getBalance") >= calls + n, proc)


def test_forecast_stats_warning_and_signal_while_spending(tmp_path: Path, sb: Sandbox) -> None:
    solver = Solver(sb)
    stop_file = tmp_path / "stop"

    def spend_then_top_up(proc: Any) -> None:
        wait_for(lambda: site.request_count >= 3, proc)
        solver.start()
        # spend for a while: enough readings (>= 3 over >= 1 s) for a known forecast
        polls_after(sb, 8, proc)
        solver.stop.set()
        solver.join()
        sb.set_balance(KEY, "50")  # a top-up: the estimate restarts (unknown), then "no spend"
        polls_after(sb, 9, proc)
        stop_file.touch()

    with LocalSite(pages=2000, delay=0.01) as site:
        crawl = run_crawl(
            tmp_path, [{"url": site.url, "stop_file": str(stop_file)}],
            {"VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": 0.3,
             "VASTCAP_TIMEOUT": 2, "VASTCAP_WARN_MINUTES": 600, "CONCURRENT_REQUESTS": 1},
            during=spend_then_top_up, timeout=120,
        )
    assert solver.solved >= 10
    assert crawl.reason == "finished"  # a forecast warns; the crawl goes on

    checks = crawl.signals("balance_checked")
    balances = [Decimal(c["balance"]) for c in checks]
    top_up = balances.index(Decimal(50))
    spending, after = checks[:top_up], checks[top_up:]
    # while spending: both stats appear once the estimate rests on enough readings, and not before
    assert spending[0]["stats"] == {"spend_per_minute": None, "minutes_left": None}
    known = [c["stats"] for c in spending if c["stats"]["minutes_left"] is not None]
    assert known, spending
    for s in known:
        assert isinstance(s["spend_per_minute"], float) and s["spend_per_minute"] > 0
        assert 0 < s["minutes_left"] < 600
    # the top-up made the forecast unknown again: both stats removed, not left stale
    assert after[0]["stats"] == {"spend_per_minute": None, "minutes_left": None}
    # then a flat balance: no spend (a rate of 0) and no time limit (absent)
    assert after[-1]["stats"] == {"spend_per_minute": 0.0, "minutes_left": None}
    stats = crawl.stats()
    assert stats["vastcap/spend_per_minute"] == 0.0 and "vastcap/minutes_left" not in stats

    # exactly one signal and one WARNING line for the crossing, while spending
    (signal,) = crawl.signals("balance_forecast")
    assert signal["state"] == "spending" and signal["main_thread"] and signal["has_guard"]
    assert Decimal(signal["spend_per_minute"]) > 0 and Decimal(signal["minutes_left"]) < 600
    (warning,) = [w for w in crawl.lines("WARNING") if "VASTCAP_WARN_MINUTES" in w]
    assert "/min" in warning and "minute(s)" in warning and MASKED in warning
    assert crawl.lines("ERROR") == []
    # it was sent while spending, before the top-up
    names = [s["signal"] for s in crawl.crawler()["signals"] if s["signal"] != "balance_low"]
    assert names.index("balance_forecast") < [i for i, n in enumerate(names) if n == "balance_checked"][top_up]


def test_no_warning_without_the_setting(tmp_path: Path, sb: Sandbox) -> None:
    """The stats come with every crawl; the warning and the signal only with VASTCAP_WARN_MINUTES."""
    solver = Solver(sb)
    stop_file = tmp_path / "stop"

    def spend(proc: Any) -> None:
        wait_for(lambda: site.request_count >= 3, proc)
        solver.start()
        polls_after(sb, 6, proc)
        solver.stop.set()
        solver.join()
        stop_file.touch()

    with LocalSite(pages=2000, delay=0.01) as site:
        crawl = run_crawl(
            tmp_path, [{"url": site.url, "stop_file": str(stop_file)}],
            {"VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": 0.3,
             "VASTCAP_TIMEOUT": 2, "CONCURRENT_REQUESTS": 1},
            during=spend, timeout=120,
        )
    assert crawl.reason == "finished"
    assert any(c["stats"]["minutes_left"] is not None for c in crawl.signals("balance_checked"))
    assert crawl.signals("balance_forecast") == []
    assert not [w for w in crawl.lines("WARNING") if "VASTCAP_WARN_MINUTES" in w]
