"""Controlling a running ``vastcap-guard sandbox`` from the shell (``sandbox set-balance``, ``fault``,
``clear-faults``, ``calls``...) and from Python (``SandboxClient``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from core_keys import BAD_KEY, DISABLED_KEY, KEY

from vastcap_guard import mask_key
from vastcap_guard.sandbox import DEFAULT_URL, Sandbox, SandboxClient, SandboxError, free_port

EXE = shutil.which("vastcap-guard")
CMD = [EXE] if EXE else [sys.executable, "-m", "vastcap_guard.cli"]
NEW_KEY = "vc_NEWKEY_s3cr3t_a1b2c3d4e5"
KEYS = (KEY, DISABLED_KEY, BAD_KEY, NEW_KEY)


def run(args: list[str], url: str | None = None, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
    if url is not None:
        env["VASTCAP_API_URL"] = url
    if key is not None:
        env["VASTCAP_API_KEY"] = key
    p = subprocess.run([*CMD, *args], env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in p.stderr
    for k in KEYS:  # sandbox keys are shown masked, like real ones
        assert k not in p.stdout + p.stderr
    return p


def get_balance(url: str, key: str) -> requests.Response:
    return requests.post(f"{url}/getBalance", json={"clientKey": key}, timeout=5)


@pytest.fixture
def cli_sandbox() -> Iterator[str]:
    """A ``vastcap-guard sandbox`` process; its API URL."""
    port = free_port()
    proc = subprocess.Popen([*CMD, "sandbox", "--port", str(port), "--account", f"{KEY}=10.25",
                             "--disabled", DISABLED_KEY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/api/solver"
    client = SandboxClient(url)
    deadline = time.monotonic() + 20
    while not client.health():
        assert proc.poll() is None and time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "vastcap-guard sandbox set-balance KEY AMOUNT" in out  # the serving sandbox says how


def test_set_balance_from_the_shell(cli_sandbox: str) -> None:
    p = run(["sandbox", "set-balance", KEY, "0.5"], cli_sandbox)
    assert p.returncode == 0 and p.stdout.strip().endswith(f"account {mask_key(KEY)} holds $0.50")
    assert run(["balance"], cli_sandbox, KEY).stdout.strip() == "0.5"
    # KEY defaults to $VASTCAP_API_KEY: the same environment the job uses
    assert run(["sandbox", "set-balance", "0"], cli_sandbox, KEY).returncode == 0
    assert run(["check"], cli_sandbox, KEY).returncode == 10
    # an unknown key becomes an account
    assert run(["sandbox", "set-balance", NEW_KEY, "3"], cli_sandbox).returncode == 0
    assert get_balance(cli_sandbox, NEW_KEY).json() == {"balance": 3.0}


def test_disable_and_enable(cli_sandbox: str) -> None:
    assert run(["sandbox", "disable", KEY], cli_sandbox).returncode == 0
    assert run(["check"], cli_sandbox, KEY).returncode == 12
    # a --disabled account holds $0: enabled, it is a low balance until topped up
    assert run(["sandbox", "enable"], cli_sandbox, DISABLED_KEY).returncode == 0
    assert run(["check"], cli_sandbox, DISABLED_KEY).returncode == 10
    assert run(["sandbox", "set-balance", DISABLED_KEY, "2"], cli_sandbox).returncode == 0
    assert run(["check"], cli_sandbox, DISABLED_KEY).returncode == 0


def test_faults_and_the_call_log(cli_sandbox: str) -> None:
    p = run(["sandbox", "fault", "getBalance", "html", "--times", "2"], cli_sandbox)
    assert p.returncode == 0 and "getBalance" in p.stdout and "next 2" in p.stdout
    answers = [get_balance(cli_sandbox, KEY) for _ in range(3)]
    assert [r.status_code for r in answers] == [502, 502, 200]
    assert answers[0].text.startswith("<!DOCTYPE html>")

    p = run(["sandbox", "calls", "--method", "getBalance", "--count"], cli_sandbox)
    assert p.stdout.strip() == "3"
    lines = run(["sandbox", "calls"], cli_sandbox).stdout.splitlines()
    assert len(lines) == 3 and all(mask_key(KEY) in line for line in lines)
    assert [line.split()[-1] for line in lines] == ["html", "html", "ok"]
    calls = [json.loads(line) for line in run(["sandbox", "calls", "--json"], cli_sandbox).stdout.splitlines()]
    assert [c["fault"] for c in calls] == ["html", "html", None] and {c["key"] for c in calls} == {mask_key(KEY)}

    assert run(["sandbox", "reset-calls"], cli_sandbox).returncode == 0
    assert run(["sandbox", "calls", "--count"], cli_sandbox).stdout.strip() == "0"


def test_fault_options_and_clear_faults(cli_sandbox: str) -> None:
    assert run(["sandbox", "fault", "getBalance", "status", "--status", "503", "--every", "2"],
               cli_sandbox).returncode == 0
    assert [get_balance(cli_sandbox, KEY).status_code for _ in range(4)] == [503, 200, 503, 200]
    assert run(["sandbox", "fault", "getBalance", "body", "--body", '{"balance": true}'], cli_sandbox).returncode == 0
    assert get_balance(cli_sandbox, KEY).text == '{"balance": true}'
    assert run(["sandbox", "fault", "createTask", "drop"], cli_sandbox).returncode == 0

    # clear one method's faults, then all
    assert run(["sandbox", "clear-faults", "getBalance"], cli_sandbox).returncode == 0
    assert get_balance(cli_sandbox, KEY).json() == {"balance": 10.25}
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{cli_sandbox}/createTask", json={"clientKey": KEY, "task": {"type": "T"}}, timeout=5)
    assert run(["sandbox", "clear-faults"], cli_sandbox).returncode == 0
    task = requests.post(f"{cli_sandbox}/createTask", json={"clientKey": KEY, "task": {"type": "T"}}, timeout=5)
    assert "taskId" in task.json()


def test_api_url_option_wins_over_the_environment(cli_sandbox: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/solver"
    p = run(["sandbox", "set-balance", KEY, "1", "--api-url", cli_sandbox], dead)
    assert p.returncode == 0
    assert get_balance(cli_sandbox, KEY).json() == {"balance": 1.0}
    p = run(["sandbox", "calls"], dead)
    assert p.returncode == 1 and f"no sandbox answers at {dead.removesuffix('/api/solver')}" in p.stderr


def test_the_default_url_is_the_default_sandbox_port() -> None:
    assert DEFAULT_URL == "http://127.0.0.1:8787/api/solver"
    assert SandboxClient().base_url == "http://127.0.0.1:8787"
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8787)) == 0:
            pytest.skip("something listens on 127.0.0.1:8787 (a developer's sandbox?): not touching it")
    p = run(["sandbox", "calls", "--count"])
    assert p.returncode == 1 and "no sandbox answers at http://127.0.0.1:8787" in p.stderr


@pytest.mark.parametrize(
    ("args", "env_url", "needle"),
    [
        # a remote API (the real one included) is never sent a control request (nor the key)
        (["sandbox", "set-balance", KEY, "5"], "https://solver.example.com/api/solver", "is not a local sandbox"),
        (["sandbox", "calls", "--api-url", "http://10.1.2.3:8787/api/solver"], None, "is not a local sandbox"),
        (["sandbox", "set-balance", "5"], None, "give the account's KEY"),
        (["sandbox", "--port", "9", "calls"], None, "--port: options for serving a sandbox"),
        (["sandbox", "set-balance", KEY, "lots"], None, "expected an amount in USD"),
        (["sandbox", "fault", "getBalance", "nope"], None, "invalid choice"),
        (["sandbox", "fault", "getBalance", "status", "--status", "99"], None, "expected an HTTP status"),
        (["sandbox", "fault", "getBalance", "html", "--times", "0"], None, "at least 1"),
    ],
)
def test_bad_control_commands_exit_2(args: list[str], env_url: str | None, needle: str) -> None:
    p = run(args, env_url)
    assert p.returncode == 2 and needle in p.stderr


# -- SandboxClient (Python) -----------------------------------------------------------------------
def test_sandbox_client_controls_a_sandbox(sandbox: Sandbox) -> None:
    client = SandboxClient(sandbox.url)
    assert client.health()
    client.set_balance(KEY, "0.25")
    assert sandbox.balance(KEY) == Decimal("0.25")
    client.fault("getBalance", "status", status=500, times=1)
    assert get_balance(sandbox.url, KEY).status_code == 500
    assert [c.fault for c in client.calls("getBalance")] == ["status"]
    assert client.calls("createTask") == []
    client.reset_calls()
    assert sandbox.call_count() == 0
    with pytest.raises(SandboxError) as refused:
        client.fault("getBalance", "html", colour="red")  # the sandbox refuses an unknown option
    assert refused.value.refused
    with pytest.raises(ValueError, match="unknown method"):
        client.fault("solve", "html")
    with pytest.raises(ValueError, match="not a local sandbox"):
        SandboxClient("https://solver.example.com/api/solver")
    assert KEY not in repr(client)


def test_sandbox_client_without_a_sandbox() -> None:
    client = SandboxClient(f"http://127.0.0.1:{free_port()}")
    assert not client.health()
    with pytest.raises(SandboxError) as err:
        client.calls()
    assert not err.value.refused


# -- the README's table of options ----------------------------------------------------------------
def _options(parser: object) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}  # type: ignore[attr-defined]


def _subparsers(parser: object) -> dict[str, object]:
    import argparse

    for a in parser._actions:  # type: ignore[attr-defined]
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def test_the_readme_table_of_options_is_true() -> None:
    from pathlib import Path

    from vastcap_guard import cli, demo

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    _, _, rest = readme.partition("| option | `balance` | `check` | `watch` | `sandbox` (serving) | `sandbox ACTION` | `demo` |")
    assert rest, "the table is gone"
    import itertools

    rows = list(itertools.takewhile(lambda line: line.startswith("|"), rest.splitlines()[2:]))
    top = _subparsers(cli.build_parser())
    sandbox = top["sandbox"]
    actions = _subparsers(sandbox)
    takes = {
        "balance": lambda o: o in _options(top["balance"]),
        "check": lambda o: o in _options(top["check"]),
        "watch": lambda o: o in _options(top["watch"]),
        "serving": lambda o: o in _options(sandbox),
        "action": lambda o: {o in _options(a) for a in actions.values()},
        "demo": lambda o: o in _options(demo.build_parser()),
    }
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        option = cells[0].split("`")[1].split()[0]
        for (name, check), cell in zip(takes.items(), cells[1:], strict=True):
            said = cell.split(":")[0]
            found = check(option)
            if name == "action":
                expected = {True} if said == "yes" else {False} if said == "no" else {True, False}
                assert found == expected, (option, name, cell)
            elif name == "demo" and option == "--timeout":
                assert found and said == "no"  # the same name, another meaning: said so in the cell
            else:
                assert found == (said == "yes"), (option, name, cell)
