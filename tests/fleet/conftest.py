from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real, throwaway redis-server on loopback."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs Debian's redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


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
