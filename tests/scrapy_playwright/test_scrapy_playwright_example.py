"""examples/scrapy_playwright/crawl.py runs as documented (local sandbox, local site, real Chromium)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("scrapy_playwright")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scrapy_playwright" / "crawl.py"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="needs Debian's chromium"),
]


def run_example(*args: str) -> tuple[dict[str, object], str]:
    proc = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_example_stops_mid_crawl() -> None:
    summary, log = run_example("--drain-after", "3")  # 3 s after the first page
    assert summary["finish_reason"] == "vastcap_low_balance"
    assert summary["browsers"] == 1 and isinstance(summary["pages"], int) and summary["pages"] > 0
    assert "Closing browser" in log


def test_example_refused_at_start_launches_no_browser() -> None:
    summary, log = run_example("--balance", "0")
    assert summary["finish_reason"] == "vastcap_low_balance"
    assert summary["browsers"] == 0 and summary["pages"] == 0
    assert "Launching browser" not in log
