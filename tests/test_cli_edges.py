"""The CLI's input edges that issue 15 found (each failed on d5cbaf5), run as a user would."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from core_keys import KEY

from vastcap_guard.sandbox import Sandbox

EXE = shutil.which("vastcap-guard")
CMD = [EXE] if EXE else [sys.executable, "-m", "vastcap_guard.cli"]


def env(url: str | None = None, key: str | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
    if url is not None:
        out["VASTCAP_API_URL"] = url
    if key is not None:
        out["VASTCAP_API_KEY"] = key
    return out


def test_a_key_file_with_a_byte_order_mark(sandbox: Sandbox, tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")  # as Notepad saves it
    p = subprocess.run([*CMD, "check", "--key-file", str(key_file)], env=env(sandbox.url),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_a_key_file_that_is_not_utf8_is_a_config_error(sandbox: Sandbox, tmp_path: Path) -> None:
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(b"\xff\xfe" + KEY.encode("utf-16-le"))
    p = subprocess.run([*CMD, "check", "--key-file", str(key_file)], env=env(sandbox.url),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--key-file" in p.stderr and "not UTF-8" in p.stderr
    assert "Traceback" not in p.stderr


def test_absurd_interval_and_timeout_are_config_errors_not_tracebacks(sandbox: Sandbox) -> None:
    for args in (["watch", "--interval", "9.3e9", "--count", "1"], ["check", "--timeout", "1e10"]):
        p = subprocess.run([*CMD, *args], env=env(sandbox.url, KEY), capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (args, p.stderr)


def test_credentials_in_the_api_url_are_masked(sandbox: Sandbox) -> None:
    port = sandbox.port
    sandbox.stop()  # unreachable: the message names the URL
    url = f"http://user:hunter2secret@127.0.0.1:{port}/api/solver"
    p = subprocess.run([*CMD, "check", "--api-url", url, "--timeout", "0.2"], env=env(key=KEY),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 14 and "127.0.0.1" in p.stderr and "hunter2secret" not in p.stdout + p.stderr


def test_a_bad_url_in_the_environment_names_the_environment_variable() -> None:
    p = subprocess.run([*CMD, "check"], env=env("not a url", KEY), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "VASTCAP_API_URL environment variable" in p.stderr and "--api-url" not in p.stderr


def test_watch_exits_130_on_ctrl_c(sandbox: Sandbox) -> None:
    proc = subprocess.Popen([*CMD, "watch", "--interval", "0.2"], env=env(sandbox.url, KEY),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # it is watching
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def test_watch_ends_cleanly_on_sigterm(sandbox: Sandbox) -> None:
    proc = subprocess.Popen([*CMD, "watch", "--interval", "0.2"], env=env(sandbox.url, KEY),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err
