"""README.md's copy-paste walk-throughs run as written: the Scrapy one ("Try it against the
sandbox") and the Playwright one (in its quick start). Each bash block runs in a temporary
directory with this interpreter's environment; only `pip install` is left out (the package is
installed already), Playwright's browser download is replaced by Debian's Chromium, and the
sandbox's and site's ports 8787/8788 by free ones, so parallel test runs do not collide."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vastcap_guard.sandbox import free_port

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block_after(heading: str) -> str:
    """The first ```bash block after the line that starts with ``heading``."""
    start = README.index(heading)
    m = re.compile(r"```bash\n(.*?)```", re.S).search(README, start)
    assert m, f"no bash block after {heading!r}"
    return m.group(1)


def run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    api, site = free_port(), free_port()
    script = script.replace("8787", str(api)).replace("8788", str(site))
    lines = [ln for ln in script.splitlines() if not ln.startswith("pip install")]
    lines = ["export CHROMIUM_PATH=/usr/bin/chromium" if ln.startswith("python -m playwright install") else ln
             for ln in lines]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VASTCAP_", "SCRAPY_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)


def test_the_scrapy_walk_through_stops_the_crawl(tmp_path: Path) -> None:
    pytest.importorskip("scrapy")
    out = run(block_after("## Try it against the sandbox"), tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: balance $10.00" in out.stdout
    assert "'finish_reason': 'vastcap_low_balance'" in out.stdout
    assert "vastcap-guard is stopping the crawl [vastcap_low_balance]" in out.stdout
    assert "vc_sandbox_0000000000000000" not in (tmp_path / "crawl.log").read_text()
    assert (tmp_path / "pages.jsonl").read_text().count("\n") > 0  # it crawled before the stop


@pytest.mark.skipif(not shutil.which("chromium") and not os.path.exists("/usr/bin/chromium"),
                    reason="needs Debian's chromium")
def test_the_playwright_walk_through_stops_the_script(tmp_path: Path) -> None:
    pytest.importorskip("playwright")
    out = run(block_after("Try it against the sandbox (copy, paste; as in"), tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped: vastcap_low_balance" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
