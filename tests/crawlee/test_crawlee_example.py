"""examples/crawlee_crawl.py runs as documented: stopped by the guard mid-crawl, then resumed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "crawlee_crawl.py"


def test_the_example_is_stopped_by_the_guard_and_resumes_after_a_top_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VASTCAP_", "CRAWLEE_"))}
    env["CRAWLEE_STORAGE_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    out, log = proc.stdout, proc.stderr
    stopped = re.search(r"stopped: vastcap_low_balance, .* returned (\d+) finished requests", out)
    assert stopped is not None and 0 < int(stopped.group(1)) < 61, out
    assert "every page crawled once: True" in out, out
    # Crawlee's own log format, the guard's lines among them; one ERROR line per stop, no traceback
    assert "[vastcap_guard.crawlee]" in log and "Crawler.stop() was called with following reason: " in log
    errors = [ln for ln in log.splitlines() if "[vastcap_guard.crawlee]" in ln and "ERROR" in ln]
    assert len(errors) == 1 and "is stopping the crawl [vastcap_low_balance]" in errors[0], errors
    assert "Traceback" not in log
    assert "vc_example_key_000000000001" not in out + log and "vc_…0001" in log
