"""Fleet mode reaches a Crawlee crawl: a stop found by another process (a real redis-server between
them) stops this crawl long before its own next check."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cr_support import (
    follow_links,
    fresh_queue,
    guard_records,
    make_crawler,
    nothing_left_behind,  # noqa: F401
    until,
)

from vastcap_guard import LowBalanceError
from vastcap_guard.crawlee import guard_crawler
from vastcap_guard.sandbox import LocalRedis, Sandbox
from vastcap_guard.site import LocalSite

KEY = "vc_FLEETCRAWLEE_s3cr3t_9c8b7a"
MEMBER = Path(__file__).resolve().parents[1] / "fleet" / "fleet_member.py"

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("nothing_left_behind"),
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")]


def strict_member(api_url: str, redis_url: str) -> list[dict[str, Any]]:
    """Another process on the account whose minimum is above the balance: it stops, and tells the fleet."""
    opts = {"api_url": api_url, "key": KEY, "shared_state": redis_url, "interval": 0.3, "min_balance": "20",
            "duration": 10}
    out = subprocess.run([sys.executable, str(MEMBER), json.dumps(opts)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_a_fleet_stop_stops_a_crawlee_crawl(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with LocalRedis(str(tmp_path)) as redis, Sandbox({KEY: "10"}) as sb, LocalSite(pages=400, delay=0.02) as site:
        crawler = make_crawler("parsel", await fresh_queue(), concurrency=1)
        handled: list[str] = []
        follow_links(crawler, handled)
        # one check a minute of its own: only the fleet can stop it in time
        g = guard_crawler(crawler, KEY, api_url=sb.url, interval=60, shared_state=redis.url)
        with pytest.raises(LowBalanceError) as info:
            async with g:
                crawl = asyncio.ensure_future(crawler.run([site.url]))
                await until(lambda: len(handled) >= 3)
                lines = await asyncio.to_thread(strict_member, sb.url, redis.url)
                stats = await asyncio.wait_for(crawl, 30)
        assert next(ln["reason"] for ln in lines if ln.get("event") == "exit") == "vastcap_low_balance"
        assert "fleet" in str(info.value) and g.tripped is info.value
        assert stats.requests_finished == len(handled) < site.pages + 1
        errors = guard_records(caplog, logging.ERROR)
        assert len(errors) == 1 and "is stopping the crawl [vastcap_low_balance]" in errors[0].getMessage()
