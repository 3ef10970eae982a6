"""Shared data and helpers of the reliability suite: the faults, the Scrapy batches, log checks.

No ``conftest`` imports: test modules import from here (the ``rel_`` prefix keeps the module
names apart from other suites' helpers, which share ``sys.path`` in one pytest run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scrapy

from vastcap_guard.sandbox import Sandbox, free_port  # noqa: F401 - the tests import it from here

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "rel_runner.py"

#: a distinctive key: finding it anywhere cannot be a coincidence
KEY = "vc_RELIAB_s3cr3t_d0n0tl0g_4e7d"
MASKED = "vc_…4e7d"

UNKNOWN_CODE_BODY = json.dumps(
    {"error": {"errorId": 77, "errorCode": "ERROR_SOMETHING_NEW", "errorDescription": "Something new happened"}}
)

#: 22 bytes of JSON: a positive balance far below any minimum, written with a huge negative exponent
TINY_EXPONENT_BODY = '{"balance": 1e-999999}'

#: every fault the sandbox can inject into getBalance: name -> (fault spec, expected reason)
FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "refused": ({"kind": "refused"}, "vastcap_api_unavailable"),
    "hang": ({"kind": "hang", "delay": 2.0}, "vastcap_api_unavailable"),
    "http500": ({"kind": "status", "status": 500}, "vastcap_api_unavailable"),
    "http502_html": ({"kind": "html", "status": 502}, "vastcap_api_unavailable"),
    "malformed_json": ({"kind": "malformed"}, "vastcap_api_unavailable"),
    "empty_object": ({"kind": "body", "body": "{}"}, "vastcap_api_unavailable"),
    "non_numeric": ({"kind": "body", "body": '{"balance": "lots"}'}, "vastcap_api_unavailable"),
    "numeric_string": ({"kind": "body", "body": '{"balance": "10.25"}'}, "vastcap_api_unavailable"),
    "boolean": ({"kind": "body", "body": '{"balance": true}'}, "vastcap_api_unavailable"),
    "infinity": ({"kind": "body", "body": '{"balance": Infinity}'}, "vastcap_api_unavailable"),
    "nan": ({"kind": "body", "body": '{"balance": NaN}'}, "vastcap_api_unavailable"),
    "negative": ({"kind": "body", "body": '{"balance": -5}'}, "vastcap_low_balance"),
    "unknown_code": ({"kind": "body", "body": UNKNOWN_CODE_BODY}, "vastcap_api_error"),
    "huge": ({"kind": "huge"}, "vastcap_api_unavailable"),
    "dropped": ({"kind": "drop"}, "vastcap_api_unavailable"),  # connection closed, no answer
}
FAULT_NAMES = list(FAULTS)
#: faults that are a balance (stop at once), not a failed check
BALANCE_FAULTS = {"negative"}
#: the subset run under the non-asyncio EPollReactor
TWISTED_SUBSET = ["refused", "hang", "http502_html", "nan", "negative", "unknown_code"]

#: mid-run cases use this VASTCAP_MAX_FAILURES / max_failures: 1 tolerated failure, the 2nd stops
MIDRUN_MAX_FAILURES = 2
#: a line longer than this is not "one clear line" (a huge body must never be echoed)
MAX_LINE = 700


def expected_reason(fault: str) -> str:
    return FAULTS[fault][1]


def inject(sandbox: Sandbox, fault: str) -> None:
    """Inject ``fault`` into a running in-process sandbox's getBalance (``refused``: stop it)."""
    spec = dict(FAULTS[fault][0])
    kind = spec.pop("kind")
    if kind == "refused":
        sandbox.stop()  # kept-alive connections are cut too: the next attempt is refused
    else:
        sandbox.fault("getBalance", kind, **spec)


# -- the Scrapy batches ------------------------------------------------------------------------
def _runner_fault(fault: str) -> dict[str, Any]:
    return dict(FAULTS[fault][0])


def matrix_cases(faults: list[str], phases: tuple[str, ...] = ("preflight", "midrun", "once")) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for phase in phases:
        for fault in faults:
            case: dict[str, Any] = {"id": f"{phase}-{fault}", "fault": _runner_fault(fault)}
            if phase == "preflight":
                case["when"] = "preflight"
            elif phase == "midrun":
                case["when"] = "midrun"
                case["settings"] = {"VASTCAP_MAX_FAILURES": MIDRUN_MAX_FAILURES}
            else:  # the first check fails, then the API recovers; the crawl may start
                case["when"] = "preflight_once"
                case["pages"] = 30
                case["delay"] = 0.005
                # 2 s to the next check: the runner clears the fault when the failed first check
                # reaches Scrapy's loop, which a loaded machine can delay past a short interval
                case["settings"] = {"VASTCAP_REQUIRE_PREFLIGHT": False, "VASTCAP_CHECK_INTERVAL": 2}
            cases.append(case)
    return cases


def batch_specs() -> dict[str, dict[str, Any]]:
    """name -> runner config (without the key). Each runs in its own subprocess."""
    # Fixed: the documented pre-flight gate with VASTCAP_MAX_FAILURES = 0 (see test_scrapy_faults).
    maxfail0 = {"id": "maxfail0-http500", "fault": _runner_fault("http500"), "when": "preflight",
                "pages": 30, "delay": 0.005, "settings": {"VASTCAP_MAX_FAILURES": 0}}
    flap = {
        "id": "flap",
        "fault": {"kind": "body", "body": UNKNOWN_CODE_BODY, "every": 2, "offset": 1},
        "when": "preflight",
        "settings": {"CLOSESPIDER_TIMEOUT": 25, "VASTCAP_CHECK_INTERVAL": 0.3},
        "delay": 0.05,
    }
    tiny = {"id": "preflight-tiny_exponent", "fault": {"kind": "body", "body": TINY_EXPONENT_BODY},
            "when": "preflight"}
    return {
        "asyncio": {"mode": "asyncio", "cases": [*matrix_cases(FAULT_NAMES), maxfail0, tiny]},
        "reactorless": {"mode": "reactorless", "cases": matrix_cases(FAULT_NAMES)},
        "twisted": {"mode": "twisted", "cases": matrix_cases(TWISTED_SUBSET, ("preflight", "midrun"))},
        "flap": {"mode": "asyncio", "cases": [flap]},
        "misc": {"mode": "asyncio", "cases": misc_cases()},
    }


#: bad Scrapy settings: id -> (settings, expected reason, the setting the ERROR line must name)
BAD_SETTINGS: dict[str, tuple[dict[str, Any], str, str]] = {
    "interval_not_a_number": ({"VASTCAP_CHECK_INTERVAL": "soon"}, "vastcap_config_error", "VASTCAP_CHECK_INTERVAL"),
    "interval_negative": ({"VASTCAP_CHECK_INTERVAL": -5}, "vastcap_config_error", "VASTCAP_CHECK_INTERVAL"),
    "minimum_not_a_number": ({"VASTCAP_MIN_BALANCE": "lots"}, "vastcap_config_error", "VASTCAP_MIN_BALANCE"),
    "empty_key": ({"VASTCAP_API_KEY": ""}, "vastcap_invalid_key", "VASTCAP_API_KEY"),
    "blank_key": ({"VASTCAP_API_KEY": "   "}, "vastcap_invalid_key", "VASTCAP_API_KEY"),
    "ftp_url": ({"VASTCAP_API_URL": "ftp://127.0.0.1/api/solver"}, "vastcap_config_error", "VASTCAP_API_URL"),
    # beyond the four asked for: every other setting with a value the guard cannot use
    "interval_zero": ({"VASTCAP_CHECK_INTERVAL": 0}, "vastcap_config_error", "VASTCAP_CHECK_INTERVAL"),
    "interval_nan": ({"VASTCAP_CHECK_INTERVAL": "nan"}, "vastcap_config_error", "VASTCAP_CHECK_INTERVAL"),
    "minimum_negative": ({"VASTCAP_MIN_BALANCE": "-1"}, "vastcap_config_error", "VASTCAP_MIN_BALANCE"),
    "timeout_zero": ({"VASTCAP_TIMEOUT": 0}, "vastcap_config_error", "VASTCAP_TIMEOUT"),
    "max_failures_negative": ({"VASTCAP_MAX_FAILURES": -1}, "vastcap_config_error", "VASTCAP_MAX_FAILURES"),
    "warn_not_a_number": ({"VASTCAP_WARN_BALANCE": "soon"}, "vastcap_config_error", "VASTCAP_WARN_BALANCE"),
    "max_spend_zero": ({"VASTCAP_MAX_SPEND": 0}, "vastcap_config_error", "VASTCAP_MAX_SPEND"),
    "require_preflight_perhaps": ({"VASTCAP_REQUIRE_PREFLIGHT": "perhaps"}, "vastcap_config_error",
                                  "VASTCAP_REQUIRE_PREFLIGHT"),
    "enabled_perhaps": ({"VASTCAP_ENABLED": "perhaps"}, "vastcap_config_error", "VASTCAP_ENABLED"),
    "warn_minutes_not_a_number": ({"VASTCAP_WARN_MINUTES": "soon"}, "vastcap_config_error", "VASTCAP_WARN_MINUTES"),
    "shared_state_not_redis": ({"VASTCAP_SHARED_STATE": "http://127.0.0.1:6379/0"}, "vastcap_config_error",
                               "VASTCAP_SHARED_STATE"),
}

#: Scrapy crawls at DEBUG for the secrets test: id -> case
SECRET_CASES: dict[str, dict[str, Any]] = {
    # runs, then the account runs dry mid-run: the stop message carries the balance
    "secret-run-then-stop": {"fault": None, "when": "midrun", "set_balance_midrun": "0"},
    # a pre-flight refusal after three failed attempts (every attempt's DEBUG line is logged)
    "secret-preflight-502": {"fault": {"kind": "html", "status": 502}, "when": "preflight"},
    # the API echoes the key back in its error description
    "secret-echoed-key": {
        "fault": {"kind": "body", "body": json.dumps({"error": {
            "errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST",
            "errorDescription": f"Invalid API key {KEY}"}})},
        "when": "preflight",
    },
}


def misc_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for cid, (settings, _, _) in BAD_SETTINGS.items():
        cases.append({"id": f"config-{cid}", "fault": None, "when": "never", "settings": dict(settings)})
    for cid, spec in SECRET_CASES.items():
        cases.append({"id": cid, **spec, "pages": 40, "delay": 0.01})
    return cases


@dataclass
class Batch:
    name: str
    proc: subprocess.Popen[str]
    tmp: Path
    started: float
    result: dict[str, Any] | None = None
    stderr: str = ""
    error: str | None = None
    elapsed: float = 0.0
    stdout: str = field(default="", repr=False)


class Batches:
    """Starts the Scrapy batches (in parallel, in the background) and waits for their results."""

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="vastcap-reliability-"))
        self._batches: dict[str, Batch] = {}

    def start(self, names: list[str]) -> None:
        specs = batch_specs()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        for name in names:
            if name in self._batches:
                continue
            config = dict(specs[name], key=KEY)
            path = self._tmp / f"{name}.json"
            path.write_text(json.dumps(config))
            proc = subprocess.Popen([sys.executable, str(RUNNER), str(path)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, cwd=self._tmp)
            self._batches[name] = Batch(name, proc, self._tmp, time.monotonic())

    def get(self, name: str, timeout: float = 420) -> Batch:
        self.start([name])
        batch = self._batches[name]
        if batch.result is None and batch.error is None:
            try:
                out, err = batch.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                batch.proc.kill()
                out, err = batch.proc.communicate()
                batch.error = f"batch {name} did not finish within {timeout}s"
            batch.elapsed = time.monotonic() - batch.started
            batch.stdout, batch.stderr = out, err
            if batch.error is None:
                if batch.proc.returncode != 0 or not out.strip():
                    batch.error = f"batch {name} exited {batch.proc.returncode}:\n{err[-6000:]}"
                else:
                    batch.result = json.loads(out.strip().splitlines()[-1])
        if batch.error is not None:
            raise AssertionError(batch.error)
        return batch

    def case(self, name: str, case_id: str) -> dict[str, Any]:
        result = self.get(name).result
        assert result is not None
        return result["cases"][case_id]  # type: ignore[no-any-return]

    def close(self) -> None:
        for batch in self._batches.values():
            if batch.proc.poll() is None:
                batch.proc.kill()
                batch.proc.communicate()
        shutil.rmtree(self._tmp, ignore_errors=True)


# -- log checks --------------------------------------------------------------------------------
def guard_lines(lines: list[str], level: str) -> list[str]:
    return [ln for ln in lines if re.search(rf"\[vastcap_guard[\w.]*\] {level}:", ln)]


def lines_at(lines: list[str], level: str) -> list[str]:
    return [ln for ln in lines if f"] {level}:" in ln]


def assert_no_traceback(lines: list[str], records: list[dict[str, Any]] | None = None) -> None:
    text = "\n".join(lines)
    assert "Traceback" not in text, text[-6000:]
    if records is not None:
        with_exc = [r["text"][:500] for r in records if r["exc_info"]]
        assert with_exc == [], with_exc


def assert_clear_line(line: str) -> None:
    """One line, short, saying nothing of a huge body."""
    assert "\n" not in line
    assert len(line) <= MAX_LINE, f"{len(line)} chars: {line[:300]}..."
    assert "0" * 50 not in line


SCRAPY_REACTORLESS = tuple(int(x) for x in scrapy.__version__.split(".")[:2]) >= (2, 15)
