"""The installed ``vastcap-guard`` command, run as a user would, against the sandbox."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from core_keys import BAD_KEY, DISABLED_KEY, KEY, LOW_KEY

from vastcap_guard.sandbox import Sandbox

EXE = shutil.which("vastcap-guard")


def run(args: list[str], key: str | None = None, url: str | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
    if key is not None:
        env["VASTCAP_API_KEY"] = key
    if url is not None:
        env["VASTCAP_API_URL"] = url
    cmd = [EXE] if EXE else [sys.executable, "-m", "vastcap_guard.cli"]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.mark.parametrize(
    ("key", "code", "reason"),
    [
        (KEY, 0, None),
        (LOW_KEY, 10, "vastcap_low_balance"),
        (BAD_KEY, 11, "vastcap_invalid_key"),
        ("", 11, "vastcap_invalid_key"),
        (DISABLED_KEY, 12, "vastcap_account_disabled"),
    ],
)
def test_check_exit_codes(sandbox: Sandbox, key: str, code: int, reason: str | None) -> None:
    p = run(["check"], key, sandbox.url)
    assert p.returncode == code, p.stderr
    if reason:
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0]
        assert "Traceback" not in p.stderr
    else:
        assert "$10.25" in p.stdout and p.stderr == ""
    assert (key or "<none>") not in p.stdout + p.stderr


def test_check_json(sandbox: Sandbox) -> None:
    out = json.loads(run(["check", "--json"], LOW_KEY, sandbox.url).stdout)
    assert out["ok"] is False and out["reason"] == "vastcap_low_balance"
    assert out["balance"] == 0.0005 and out["minimum"] == 0.001
    ok = json.loads(run(["check", "--json", "--min-balance", "5"], KEY, sandbox.url).stdout)
    assert ok == {"ok": True, "reason": None, "balance": 10.25, "minimum": 5, "warning": False}


def test_check_min_balance(sandbox: Sandbox) -> None:
    assert run(["check", "--min-balance", "20"], KEY, sandbox.url).returncode == 10
    assert run(["check", "--min-balance", "10.25"], KEY, sandbox.url).returncode == 0


def test_check_warn_balance_passes_with_warning(sandbox: Sandbox) -> None:
    p = run(["check", "--warn-balance", "20"], KEY, sandbox.url)
    assert p.returncode == 0 and "warning" in p.stderr


def test_api_unavailable(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "html")
    p = run(["check", "--timeout", "1"], KEY, sandbox.url)
    assert p.returncode == 14 and "vastcap_api_unavailable" in p.stderr and "Traceback" not in p.stderr


def test_api_error(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "body", body='{"error": {"errorId": 7, "errorCode": "ERROR_IP_BANNED", "errorDescription": "banned"}}')
    p = run(["check"], KEY, sandbox.url)
    assert p.returncode == 15 and "ERROR_IP_BANNED" in p.stderr


def test_balance_plain_and_json(sandbox: Sandbox) -> None:
    assert run(["balance"], KEY, sandbox.url).stdout.strip() == "10.25"
    assert json.loads(run(["balance", "--json"], KEY, sandbox.url).stdout) == {"balance": 10.25, "currency": "USD"}
    assert run(["balance"], BAD_KEY, sandbox.url).returncode == 11


def test_key_file_and_api_url_flag(sandbox: Sandbox, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    p = run(["balance", "--key-file", str(key_file), "--api-url", sandbox.url])
    assert p.returncode == 0 and p.stdout.strip() == "10.25"
    p = run(["balance", "--key-file", "-", "--api-url", sandbox.url], input=KEY)
    assert p.stdout.strip() == "10.25"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["check", "--min-balance", "abc"], "--min-balance"),
        (["check", "--api-url", "ftp://x"], "--api-url"),
        (["check", "--key-file", "/nonexistent/key"], "--key-file"),
        (["check", "--timeout", "-1"], "--timeout"),
    ],
)
def test_bad_usage_exits_2_naming_the_option(args: list[str], needle: str) -> None:
    p = run(args, KEY)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr


def test_no_key_argument_exists() -> None:
    p = run(["check", "--key", KEY])
    assert p.returncode == 2


def test_sandbox_command_serves_and_stops() -> None:
    port = _free_port()
    cmd = [EXE] if EXE else [sys.executable, "-m", "vastcap_guard.cli"]
    proc = subprocess.Popen(
        [*cmd, "sandbox", "--port", str(port), "--account", f"{KEY}=10.25", "--disabled", DISABLED_KEY, "--price", "0.002"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/solver"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.post(f"{url}/getBalance", json={"clientKey": KEY}, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.1)
        assert r.json() == {"balance": 10.25}
        assert run(["check"], DISABLED_KEY, url).returncode == 12
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and url in out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
