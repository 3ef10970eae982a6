"""Fleet mode with real Scrapy crawler processes, a real redis-server and the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fleet_support import free_port

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytest.importorskip("scrapy")

RUNNER = Path(__file__).resolve().parents[1] / "scrapy" / "runner.py"
KEY = "vc_FLEETSCRAPY_s3cr3t_9e8d7c6b"


class Crawl:
    def __init__(self, tmp: Path, site: LocalSite, sb: Sandbox, mode: str = "asyncio", **settings: Any) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        n = time.monotonic_ns()
        self.log_file = tmp / f"crawl-{n}.log"
        self.events_file = tmp / f"events-{n}.jsonl"
        base = {
            "VASTCAP_API_URL": sb.url, "VASTCAP_API_KEY": KEY, "VASTCAP_TIMEOUT": 1,
            "CONCURRENT_REQUESTS": 2, "LOG_LEVEL": "INFO",
        }
        base.update(settings)
        config = {"mode": mode, "log_file": str(self.log_file), "settings": base,
                  "crawlers": [{"url": site.url}], "events_file": str(self.events_file)}
        cfg = tmp / f"config-{n}.json"
        cfg.write_text(json.dumps(config))
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, str(RUNNER), str(cfg)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.out: dict[str, Any] = {}
        self.ended = 0.0

    def joined(self, timeout: float = 60) -> Crawl:
        """Wait until the crawl passed its pre-flight (its 'checking every' line): it is in the
        fleet. A fixed sleep is not enough on a loaded machine, and a stop published before a
        member joined is not its own."""
        deadline = time.monotonic() + timeout
        while "checking every" not in self.log:
            assert self.proc.poll() is None, "the crawl ended before its pre-flight passed"
            assert time.monotonic() < deadline, f"no pre-flight within {timeout:g} s"
            time.sleep(0.1)
        return self

    def wait(self, timeout: float = 90) -> Crawl:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        self.ended = time.time()
        assert self.proc.returncode == 0, stderr[-3000:]
        self.out = json.loads(stdout.strip().splitlines()[-1])
        return self

    @property
    def stats(self) -> dict[str, Any]:
        return self.out["crawlers"][0]["stats"]  # type: ignore[no-any-return]

    @property
    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def events(self, signal: str) -> list[float]:
        """When the crawl sent ``signal`` (crawl_paused, crawl_resumed, guard_tripped), so far."""
        if not self.events_file.exists():
            return []
        out = []
        for line in self.events_file.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:  # being written
                continue
            if event["signal"] == signal:
                out.append(float(event["at"]))
        return out

    def signals(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.out["crawlers"][0]["signals"] if s["signal"] == name]


@pytest.fixture
def sb() -> Sandbox:
    with Sandbox({KEY: "10"}) as s:
        yield s


@pytest.fixture
def site() -> LocalSite:
    with LocalSite(pages=20000, delay=0.05) as s:
        yield s


def test_crawlers_share_one_poll_per_interval(tmp_path: Path, sb: Sandbox, site: LocalSite, redis_url: str) -> None:
    crawls = [Crawl(tmp_path, site, sb, VASTCAP_CHECK_INTERVAL=0.5, VASTCAP_SHARED_STATE=redis_url,
                    CLOSESPIDER_TIMEOUT=5) for _ in range(4)]
    for c in crawls:
        c.wait()
    fleet_calls = sb.call_count("getBalance")
    for c in crawls:
        assert c.stats["finish_reason"] == "closespider_timeout"
        assert c.stats["vastcap/checks"] >= 4  # every member kept receiving readings
        assert "Traceback" not in c.log
    # ~10 intervals for the fleet plus one pre-flight per process; alone they would make ~44
    assert fleet_calls <= 5 / 0.5 + 4 + 4, fleet_calls


def test_a_stop_reaches_every_crawler_within_about_a_second(tmp_path: Path, sb: Sandbox, site: LocalSite,
                                                            redis_url: str) -> None:
    relaxed = [Crawl(tmp_path, site, sb, VASTCAP_CHECK_INTERVAL=60, VASTCAP_SHARED_STATE=redis_url,
                     CLOSESPIDER_TIMEOUT=60) for _ in range(3)]
    strict = Crawl(tmp_path, site, sb, VASTCAP_CHECK_INTERVAL=0.3, VASTCAP_MIN_BALANCE=5,
                   VASTCAP_SHARED_STATE=redis_url, CLOSESPIDER_TIMEOUT=60)
    for c in [*relaxed, strict]:
        c.joined()
    time.sleep(1)  # all crawling
    sb.set_balance(KEY, "3")
    strict.wait()
    assert strict.stats["finish_reason"] == "vastcap_low_balance"
    for c in relaxed:
        c.wait()
        assert c.stats["finish_reason"] == "vastcap_low_balance"
        # stopped long before their own 60 s check or the 60 s timeout
        assert c.ended - strict.ended < 20
        assert "Another member of the fleet stopped" in c.log


def test_hand_over_after_the_polling_crawler_is_killed(tmp_path: Path, sb: Sandbox, site: LocalSite,
                                                       redis_url: str) -> None:
    first = Crawl(tmp_path, site, sb, VASTCAP_CHECK_INTERVAL=0.3, VASTCAP_SHARED_STATE=redis_url,
                  CLOSESPIDER_TIMEOUT=60).joined()
    time.sleep(1)
    others = [Crawl(tmp_path, site, sb, VASTCAP_CHECK_INTERVAL=0.3, VASTCAP_SHARED_STATE=redis_url,
                    CLOSESPIDER_TIMEOUT=12) for _ in range(2)]
    for c in others:
        c.joined()
    time.sleep(1)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.communicate()
    killed = time.time()
    for c in others:
        c.wait()
        assert c.stats["finish_reason"] == "closespider_timeout"
    # polls went on after the lease of the killed poller ran out (2 x 0.3 + 3 x 1 s)
    late = [call for call in sb.calls("getBalance") if call.at > killed + 4.5]
    assert len(late) >= 5


def test_redis_down_falls_back_to_own_polling(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    c = Crawl(tmp_path, site, sb, VASTCAP_CHECK_INTERVAL=0.3, VASTCAP_SHARED_STATE=dead, CLOSESPIDER_TIMEOUT=3).wait()
    assert c.stats["finish_reason"] == "closespider_timeout"
    assert c.stats["vastcap/checks"] >= 4
    warnings = [line for line in c.log.splitlines() if "unreachable" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    assert "Traceback" not in c.log


def test_bad_shared_state_setting_closes_at_start(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    c = Crawl(tmp_path, site, sb, VASTCAP_SHARED_STATE="http://127.0.0.1:1/").wait()
    assert c.stats["finish_reason"] == "vastcap_config_error"
    assert site.request_count == 0
    assert "VASTCAP_SHARED_STATE" in c.log


def _until(condition: Any, crawls: list[Crawl], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        for c in crawls:
            assert c.proc.poll() is None, "a crawl ended too early"
        time.sleep(0.05)


def test_members_in_pause_mode_pause_together_and_resume_together_on_the_top_up(
        tmp_path: Path, sb: Sandbox, redis_url: str) -> None:
    """Two members in pause mode (asyncio and EPoll reactors) and one that closes (reactorless on
    Scrapy 2.15+), each crawling its own site. The closing member's stricter minimum trips first and
    it publishes a low-balance stop: the pausing members pause instead of closing, and resume at
    the fleet's next reading. Then the account runs dry: both pause on the fleet's reading, send
    nothing more, and resume together on the top-up; they finish their sites, every page once."""
    from vastcap_guard.scrapy._compat import SCRAPY_VERSION

    with LocalSite(pages=80) as site_a, LocalSite(pages=80) as site_b, LocalSite(pages=20000, delay=0.05) as site_c:
        fleet = {"VASTCAP_CHECK_INTERVAL": 0.3, "VASTCAP_SHARED_STATE": redis_url, "DOWNLOAD_DELAY": 0.2}
        a = Crawl(tmp_path, site_a, sb, "asyncio", VASTCAP_ON_LOW_BALANCE="pause", **fleet)
        b = Crawl(tmp_path, site_b, sb, "twisted", VASTCAP_ON_LOW_BALANCE="pause", **fleet)
        c = Crawl(tmp_path, site_c, sb, "reactorless" if SCRAPY_VERSION >= (2, 15) else "asyncio",
                  VASTCAP_MIN_BALANCE=5, CLOSESPIDER_TIMEOUT=60, **fleet)
        members = [a, b]
        _until(lambda: min(s.request_count for s in (site_a, site_b, site_c)) >= 3, [a, b, c])
        # $3: below the closing member's $5 minimum, above the pausing members' $0.001
        sb.set_balance(KEY, "3")
        c.wait()
        _until(lambda: all(m.events("crawl_resumed") for m in members), members)
        # the account runs dry: both pause on the fleet's reading
        sb.set_balance(KEY, "0")
        _until(lambda: all(len(m.events("crawl_paused")) == 2 for m in members), members)
        dry = max(m.events("crawl_paused")[1] for m in members)
        calls = sb.call_count("getBalance")
        _until(lambda: sb.call_count("getBalance") >= calls + 3, members)  # a few fleet checks
        counts = (site_a.request_count, site_b.request_count)
        topped_up = time.time()
        sb.set_balance(KEY, "10")
        for m in members:
            m.wait()
        sites = {"a": site_a.requests, "b": site_b.requests}
    assert c.stats["finish_reason"] == "vastcap_low_balance"
    for name, m in zip("ab", members, strict=True):
        assert m.stats["finish_reason"] == "finished", name
        paths = [r.path for r in sites[name]]
        assert len(paths) == 81 and len(set(paths)) == 81, name  # every page, once
        first, second = m.signals("crawl_paused")
        # the published stop paused it (its own minimum was not reached) ...
        assert "Another member of the fleet stopped" in first["message"]
        # ... and the dry account paused it again; nothing new went out until the top-up
        sent = [r for r in sites[name] if second["at"] < r.at < topped_up]
        assert len(sent) <= second["committed"].get("127.0.0.1", 0), name
        resumed = m.signals("crawl_resumed")
        assert len(resumed) == 2 and resumed[1]["at"] > topped_up, name
        assert m.stats["vastcap/pauses"] == 2
        assert "Traceback" not in m.log and "] ERROR:" not in m.log
    assert counts[0] < 81 and counts[1] < 81 and dry < topped_up
