"""Helpers and fixtures for the Playwright adapter tests.

There is deliberately no ``conftest.py`` here: pytest imports every ``conftest.py`` of a rootdir
without ``__init__.py`` files as the module ``conftest``, and another suite's ``from conftest import``
would then find this one. Test modules import the fixtures they use from here
from ``pw_fixtures`` (with ``# noqa: F401``: pytest finds them by name).

The browser: a Playwright-managed Chromium when one is installed, else Debian's
``/usr/bin/chromium`` (Playwright's download is not reachable here). The tests skip, saying why,
only when neither exists.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from browser_support import HangingPage, set_balance_when, wait_until  # noqa: F401 - imported from here

SYSTEM_CHROMIUM = "/usr/bin/chromium"
GUARDED_SCRIPT = Path(__file__).with_name("guarded_script.py")
#: what Python prints at exit when a stopped sync script leaves Playwright's closes unfinished
EXIT_NOISE = ("Task was destroyed", "never retrieved", "Traceback")
SYSTEM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@functools.cache
def find_browser() -> tuple[str, dict[str, Any]] | None:
    """(description, launch kwargs) of the browser to test with, or None."""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            managed = p.chromium.executable_path
    except Exception:
        managed = ""
    if managed and os.path.exists(managed):
        return f"Playwright-managed Chromium ({managed})", {"args": list(SYSTEM_ARGS)}
    if os.path.exists(SYSTEM_CHROMIUM):
        return f"system Chromium ({SYSTEM_CHROMIUM})", {"executable_path": SYSTEM_CHROMIUM, "args": list(SYSTEM_ARGS)}
    return None


def browser_pids(marker: str) -> list[int]:
    """Processes whose command line carries ``marker`` (any Chromium process a test launched)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry))
    return pids


def chromium_descendants() -> list[int]:
    """Chromium processes below this one (through Playwright's driver)."""
    parents: dict[int, int] = {}
    names: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                names[int(entry)] = f.read()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(b")", 1)[1].split()[1])
    me = os.getpid()
    found = []
    for pid in parents:
        p = pid
        while p in parents and p not in (0, 1):
            p = parents[p]
            if p == me:
                if b"chrom" in names.get(pid, b"").lower():
                    found.append(pid)
                break
    return found





def assert_gone(marker: str) -> None:
    """The browsers this test launched have exited (generous wait: exit is asynchronous)."""
    assert wait_until(lambda: not browser_pids(marker)), f"browser processes left: {browser_pids(marker)}"


def guard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vastcap-guard-poller")]


def run_guarded_script(cfg: dict[str, Any], timeout: float = 120) -> tuple[dict[str, Any], str]:
    """Run ``guarded_script.py`` with ``cfg`` in a child process: (its JSON result, its stderr)."""
    proc = subprocess.run([sys.executable, str(GUARDED_SCRIPT), json.dumps(cfg)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"the script failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def exit_noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(n in line for n in EXIT_NOISE)]
