"""Where only a fork is installed (patchright, no ``playwright``): the guard imports and stops scripts.

scripts/test.sh runs this module in a virtualenv of its own that holds patchright and not Playwright
(``.venv-fork-only``). In the main environment, where Playwright is installed too, each case runs in
a child process where ``playwright`` cannot be imported (``sys.modules["playwright"] = None``, what
Python does for a module that is not there), so the module proves the same thing in both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from pw_fixtures import launch_fixture, marker_fixture  # noqa: F401
from pw_support import assert_gone, exit_noise, run_guarded_script

from vastcap_guard.playwright import _flavors

pytestmark = pytest.mark.browser

FORK = "patchright"
if FORK not in _flavors.installed_names():  # pragma: no cover - the test extra installs it
    pytest.skip("patchright is not installed (pip install patchright)", allow_module_level=True)

NO_PLAYWRIGHT = "import sys; sys.modules['playwright'] = None\n"


def test_the_adapter_imports_without_playwright() -> None:
    code = NO_PLAYWRIGHT + (
        "import json, importlib.util\n"
        "import vastcap_guard.playwright as adapter\n"
        "from vastcap_guard.playwright import _flavors, guard\n"
        "print(json.dumps({'names': _flavors.installed_names(),\n"
        "                  'available': [f.name for f in _flavors.available()],\n"
        "                  'guard': callable(guard),\n"
        "                  'playwright_loaded': sys.modules.get('playwright') is not None,\n"
        "                  'importable': importlib.util.find_spec('playwright') is not None}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["importable"] is False and out["playwright_loaded"] is False
    assert FORK in out["names"] and "playwright" not in out["names"]
    assert out["available"] == out["names"] and out["guard"] is True


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_guarded_fork_script_is_stopped_mid_run(launch: dict[str, Any], marker: str, api: str) -> None:
    result, stderr = run_guarded_script(
        {"flavor": FORK, "api": api, "shape": "decorator", "launch": launch, "block": ["playwright"]})
    assert result["playwright_importable"] is False and result["playwright_loaded"] is False
    assert "playwright" not in result["flavors"] and FORK in result["flavors"]
    assert result["error"] == "LowBalanceError" and result["reason"] == "vastcap_low_balance", result
    assert result["loads"] == 1 and result["reached_end"] is False  # stopped mid-run, in a Playwright call
    assert result["cause"] is not None and result["cause"].startswith(f"{FORK}._impl."), result
    assert "vastcap_low_balance" in result["cause_text"]
    assert exit_noise(stderr) == [], stderr[-3000:]
    assert_gone(marker)
