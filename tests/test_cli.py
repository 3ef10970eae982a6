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

from vastcap_guard.sandbox import Sandbox, free_port

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
    port = free_port()
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


def test_watch_prints_plain_lines_when_not_a_tty(sandbox: Sandbox) -> None:
    p = run(["watch", "--interval", "0.1", "--count", "3"], KEY, sandbox.url)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("balance $10.25") for line in lines)
    assert "\r" not in p.stdout and "rate unknown" in lines[0]


def test_watch_exits_like_check_when_the_money_runs_out(sandbox: Sandbox) -> None:
    import threading

    timer = threading.Timer(1.0, sandbox.set_balance, (KEY, "0"))
    timer.start()
    try:
        p = run(["watch", "--interval", "0.2", "--count", "200"], KEY, sandbox.url)
    finally:
        timer.cancel()
    assert p.returncode == 10 and "vastcap_low_balance" in p.stderr
    assert "balance $0.00" in p.stdout.strip().splitlines()[-1]


def test_watch_shows_the_spend_rate(sandbox: Sandbox) -> None:
    import threading

    stop = threading.Event()

    def spend() -> None:
        balance = 10
        while not stop.wait(0.15):
            balance -= 0.01
            sandbox.set_balance(KEY, f"{balance:.2f}")

    t = threading.Thread(target=spend)
    t.start()
    try:
        p = run(["watch", "--interval", "0.2", "--count", "8", "--warn-minutes", "100000"], KEY, sandbox.url)
    finally:
        stop.set()
        t.join()
    assert p.returncode == 0
    assert "spending $" in p.stdout and "left" in p.stdout
    # every line while the money runs out within --warn-minutes says so (not only the first)
    spending = [line for line in p.stdout.splitlines() if "spending $" in line]
    assert len(spending) >= 2
    assert all("money runs out within --warn-minutes" in line for line in spending)


def test_watch_updates_one_line_on_a_terminal(sandbox: Sandbox) -> None:
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
    env.update(VASTCAP_API_KEY=KEY, VASTCAP_API_URL=sandbox.url)
    cmd = [EXE] if EXE else [sys.executable, "-m", "vastcap_guard.cli"]
    proc = subprocess.run([*cmd, "watch", "--interval", "0.1", "--count", "3"], env=env, stdout=slave,
                          stderr=subprocess.PIPE, timeout=60)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.returncode == 0
    text = out.decode()
    assert text.count("\r") >= 3 and text.count("balance $10.25") == 3
    assert text.rstrip("\r\n").count("\n") == 0  # one line, rewritten in place


def test_version_is_the_package_version() -> None:
    import vastcap_guard

    p = run(["--version"])
    assert p.returncode == 0 and p.stdout.strip() == f"vastcap-guard {vastcap_guard.__version__}"
