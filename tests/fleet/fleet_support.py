"""Helpers for the fleet tests: a member process and free ports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from vastcap_guard.sandbox import free_port  # noqa: F401 - the tests import it from here

HERE = Path(__file__).parent
REDIS = shutil.which("redis-server")


class Member:
    def __init__(self, **opts: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fleet_member.py"), json.dumps(opts)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.stderr = ""

    def joined(self, timeout: float = 60) -> Member:
        """Wait until the member has its first verdict: it is in the fleet, with a reading.

        A fixed sleep is not enough on a loaded machine, where starting the process can take
        seconds: a stop published before a member joined is not its own."""
        assert self.proc.stdout is not None
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            while not any("action" in ln for ln in self.lines):
                line = self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"the member ended before its first verdict: {self.lines}")
                if line.strip():
                    self.lines.append(json.loads(line))
        finally:
            timer.cancel()
        return self

    def wait(self, timeout: float = 60) -> Member:
        # not communicate(): it reads the pipe's file descriptor and would miss what joined()'s
        # readline() buffered
        assert self.proc.stdout is not None and self.proc.stderr is not None
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.append(self.proc.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        timer = threading.Timer(timeout, self.proc.kill)  # a member that hangs fails the test, it does not hang it
        timer.start()
        try:
            out = self.proc.stdout.read()
            self.proc.wait()
            reader.join()
        finally:
            timer.cancel()
        self.lines += [json.loads(line) for line in out.splitlines() if line.strip()]
        self.stderr = "".join(err)
        return self

    @property
    def exit_reason(self) -> str | None:
        return next((ln["reason"] for ln in self.lines if ln.get("event") == "exit"), "no-exit-line")

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        return [ln for ln in self.lines if "action" in ln]
