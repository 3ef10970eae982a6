"""examples/playwright_sync.py and playwright_async.py run as documented (sandbox, local site, Chromium),
and say how to get a browser when Playwright cannot find one (the first ten minutes of issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pw_fixtures import launch_fixture, marker_fixture  # noqa: F401
from pw_support import exit_noise

pytestmark = pytest.mark.browser

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
    return subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=180,
                          env={**full, **env})


@pytest.mark.parametrize("name", ["playwright_sync.py", "playwright_async.py"])
def test_the_example_is_stopped_by_the_guard(launch: dict[str, Any], name: str) -> None:
    chromium = launch.get("executable_path")
    proc = run_example(name, **({"CHROMIUM_PATH": chromium} if chromium else {}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stopped: vastcap_low_balance" in proc.stdout
    assert "is stopping the Playwright script [vastcap_low_balance]" in proc.stderr  # the ERROR line
    assert exit_noise(proc.stderr) == [], proc.stderr[-3000:]


@pytest.mark.parametrize("name", ["playwright_sync.py", "playwright_async.py"])
def test_the_example_says_how_to_get_a_browser(name: str) -> None:
    proc = run_example(name, CHROMIUM_PATH="/nonexistent/chromium")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "python -m playwright install chromium" in proc.stderr and "CHROMIUM_PATH=" in proc.stderr
    assert "Traceback" not in proc.stderr
