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
    def __init__(self, tmp: Path, site: LocalSite, sb: Sandbox, **settings: Any) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        n = time.monotonic_ns()
        self.log_file = tmp / f"crawl-{n}.log"
        base = {
            "VASTCAP_API_URL": sb.url, "VASTCAP_API_KEY": KEY, "VASTCAP_TIMEOUT": 1,
            "CONCURRENT_REQUESTS": 2, "LOG_LEVEL": "INFO",
        }
        base.update(settings)
        config = {"mode": "asyncio", "log_file": str(self.log_file), "settings": base,
                  "crawlers": [{"url": site.url}]}
        cfg = tmp / f"config-{n}.json"
        cfg.write_text(json.dumps(config))
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, str(RUNNER), str(cfg)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.out: dict[str, Any] = {}
        self.ended = 0.0

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
    time.sleep(4)  # all crawling
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
                  CLOSESPIDER_TIMEOUT=60)
    time.sleep(3)
    others = [Crawl(tmp_path, site, sb, VASTCAP_CHECK_INTERVAL=0.3, VASTCAP_SHARED_STATE=redis_url,
                    CLOSESPIDER_TIMEOUT=12) for _ in range(2)]
    time.sleep(3)
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
