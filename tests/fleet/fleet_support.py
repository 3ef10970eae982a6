"""Helpers for the fleet tests: a member process and free ports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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

    def wait(self, timeout: float = 60) -> Member:
        out, err = self.proc.communicate(timeout=timeout)
        self.lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.stderr = err
        return self

    @property
    def exit_reason(self) -> str | None:
        return next((ln["reason"] for ln in self.lines if ln.get("event") == "exit"), "no-exit-line")

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        return [ln for ln in self.lines if "action" in ln]
