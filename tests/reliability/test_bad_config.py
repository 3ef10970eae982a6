"""Bad configuration is a clear error naming the setting, at startup, before anything runs.

- Scrapy: the crawl closes at start with ``vastcap_config_error`` (``vastcap_invalid_key`` for an
  empty key), one ERROR line naming the setting, zero requests to the site or the API;
- Playwright: ``guard()`` raises ``ConfigError`` naming the parameter (an empty key:
  ``InvalidKeyError`` on entry), before the body, so before any browser launches;
- CLI: exit 2 (11 for an empty key) and one line naming the option.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_support import BAD_SETTINGS, KEY, Batches, assert_clear_line, guard_lines, lines_at

from vastcap_guard import ConfigError, InvalidKeyError
from vastcap_guard.cli import main as cli_main
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}) as sandbox:
        yield sandbox


# -- Scrapy ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", list(BAD_SETTINGS))
@pytest.mark.parametrize("batch", ["misc"])
def test_scrapy_bad_setting_closes_at_start(batches: Batches, batch: str, bad: str) -> None:
    _, reason, setting = BAD_SETTINGS[bad]
    case = batches.case(batch, f"config-{bad}")
    assert case["crash"] is None
    assert case["stats"]["finish_reason"] == reason
    assert case["site_requests"] == 0 and case["getbalance_calls"] == 0
    assert "downloader/request_count" not in case["stats"]
    errors = lines_at(case["log"], "ERROR")
    assert len(errors) == 1 and guard_lines(errors, "ERROR") == errors, errors
    assert f"did not start the crawl [{reason}]" in errors[0] and setting in errors[0]
    assert_clear_line(errors[0])
    assert "Traceback" not in "\n".join(case["log"])
    assert [s["reason"] for s in case["signals"] if s["signal"] == "guard_tripped"] == [reason]


# -- Playwright ------------------------------------------------------------------------------------
PW_BAD: dict[str, tuple[dict[str, Any], str]] = {
    "interval_not_a_number": ({"interval": "soon"}, "interval"),
    "interval_negative": ({"interval": -5}, "interval"),
    "minimum_not_a_number": ({"min_balance": "lots"}, "min_balance"),
    "ftp_url": ({"api_url": "ftp://127.0.0.1/api/solver"}, "api_url"),
    "timeout_zero": ({"timeout": 0}, "timeout"),
    "max_failures_negative": ({"max_failures": -1}, "max_failures"),
    "warn_not_a_number": ({"warn_balance": "soon"}, "warn_balance"),
    "max_spend_negative": ({"max_spend": "-1"}, "max_spend"),
    "warn_minutes_not_a_number": ({"warn_minutes": "soon"}, "warn_minutes"),
}


@pytest.mark.parametrize("bad", list(PW_BAD))
def test_playwright_bad_parameter_raises_config_error(sb: Sandbox, bad: str) -> None:
    kwargs, name = PW_BAD[bad]
    ran: list[str] = []
    with pytest.raises(ConfigError) as info:
        @guard(KEY, **{"api_url": sb.url, **kwargs})
        def script() -> None:  # pragma: no cover - never defined, never run
            ran.append("body")  # (it would launch a browser)
    err = info.value
    assert err.setting == name and name in str(err) and err.reason == "vastcap_config_error"
    assert_clear_line(str(err))
    assert ran == [] and sb.call_count("getBalance") == 0


@pytest.mark.parametrize("form", ["with", "async_with", "decorator"])
@pytest.mark.parametrize("key", ["", "   "])
def test_playwright_empty_key_raises_before_the_body(sb: Sandbox, form: str, key: str) -> None:
    g = guard(key, api_url=sb.url, interval=1)
    ran: list[str] = []
    with pytest.raises(InvalidKeyError) as info:
        if form == "with":
            with g:
                ran.append("body")
        elif form == "async_with":
            async def main() -> None:
                async with g:
                    ran.append("body")

            asyncio.run(main())
        else:
            @g
            def script() -> None:
                ran.append("body")

            script()
    assert ran == [] and sb.call_count("getBalance") == 0
    assert "VASTCAP_API_KEY" in str(info.value) and "api_key" in str(info.value)


# -- CLI -------------------------------------------------------------------------------------------
def cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, key: str | None = KEY) -> tuple[int, str, str]:
    if key is None:
        monkeypatch.delenv("VASTCAP_API_KEY", raising=False)
    else:
        monkeypatch.setenv("VASTCAP_API_KEY", key)
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


CLI_BAD: dict[str, tuple[list[str], str]] = {
    "check_min_balance_not_a_number": (["check", "--min-balance", "lots"], "--min-balance"),
    "watch_interval_not_a_number": (["watch", "--interval", "soon", "--count", "1"], "--interval"),
    "watch_interval_negative": (["watch", "--interval", "-5", "--count", "1"], "--interval"),
    "check_timeout_not_a_number": (["check", "--timeout", "soon"], "--timeout"),
    "check_warn_not_a_number": (["check", "--warn-balance", "soon"], "--warn-balance"),
    "watch_max_failures_not_a_number": (["watch", "--max-failures", "x", "--count", "1"], "--max-failures"),
}


@pytest.mark.parametrize("bad", list(CLI_BAD))
def test_cli_bad_option_exits_2_naming_it(sb: Sandbox, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    argv, option = CLI_BAD[bad]
    code, out, err = cli([*argv, "--api-url", sb.url], monkeypatch)
    assert out == ""
    assert code == 2
    assert err.count("\n") == 1 and "vastcap_config_error" in err and option in err, err
    assert sb.call_count("getBalance") == 0


def test_cli_unknown_url_scheme_exits_2(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(["check", "--api-url", "ftp://127.0.0.1/api/solver"], monkeypatch)
    assert out == ""
    assert code == 2 and err.count("\n") == 1 and "--api-url" in err and "vastcap_config_error" in err


@pytest.mark.parametrize("key", ["", None])
def test_cli_empty_key_exits_11(sb: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str | None) -> None:
    code, out, err = cli(["check", "--api-url", sb.url], monkeypatch, key=key)
    assert out == ""
    assert code == 11
    assert err.count("\n") == 1 and "vastcap_invalid_key" in err and "VASTCAP_API_KEY" in err, err
    assert sb.call_count("getBalance") == 0


def test_cli_empty_key_file_exits_2(sb: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "key"
    empty.write_text("\n")
    code, out, err = cli(["check", "--key-file", str(empty), "--api-url", sb.url], monkeypatch, key=None)
    assert out == ""
    assert code == 2 and err.count("\n") == 1 and "--key-file" in err
    assert sb.call_count("getBalance") == 0


def test_cli_real_exit_code(sb: Sandbox) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
    env["VASTCAP_API_KEY"] = KEY
    proc = subprocess.run([sys.executable, "-m", "vastcap_guard.cli", "check", "--min-balance", "lots",
                           "--api-url", sb.url], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "--min-balance" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
