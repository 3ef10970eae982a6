"""examples/selenium_script.py runs as documented: offline, stopped by the guard, nothing left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sel_support import Processes, needs_chrome, procs_fixture  # noqa: F401

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "selenium_script.py"
pytestmark = [pytest.mark.browser, needs_chrome]


def test_example_is_stopped_by_the_guard(procs: Processes) -> None:
    # the example's chromedriver and browser inherit this test's token (procs)
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "stopped: vastcap_low_balance" in proc.stdout
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "is stopping the Selenium script [vastcap_low_balance]" in errors[0]
    procs.assert_gone()
