"""The main job end to end: the example Scrapy project and ``vastcap-guard demo``.

Every test runs real processes against a real sandbox and local site on 127.0.0.1: ``scrapy crawl``
in ``examples/scrapy_project``, and the demo command. No reactor runs in the test process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from vastcap_guard.demo import DEMO_KEY, find_project
from vastcap_guard.demo import main as demo_main
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytest.importorskip("scrapy")

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "examples" / "scrapy_project"
KEY = "vc_test_example_project_91c2"
PRICE = Decimal("0.002")

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRAPY_", "VASTCAP_", "DEMO_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def test_example_project_is_stopped_by_the_guard_when_its_balance_runs_out(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    items_file = tmp_path / "pages.jsonl"
    start = Decimal("0.02")  # ten captchas
    with Sandbox({KEY: start}, price=PRICE) as sandbox, LocalSite(pages=400, captcha_every=4) as site:
        proc = subprocess.run(
            [sys.executable, "-m", "scrapy", "crawl", "captchas", "-a", f"site_url={site.url}",
             "-O", str(items_file),
             "-s", "VASTCAP_CHECK_INTERVAL=0.5", "-s", f"DEMO_RESULT_FILE={result_file}",
             "-s", "LOG_LEVEL=DEBUG"],
            cwd=PROJECT, env=_env(VASTCAP_API_KEY=KEY, VASTCAP_API_URL=sandbox.url),
            capture_output=True, text=True, timeout=120,
        )
        api_url = sandbox.url
        balance_end = sandbox.balance(KEY)
        created = sandbox.call_count("createTask")
        checks = sandbox.call_count("getBalance")
        site_requests = site.request_count
        captcha_pages_fetched = sum(1 for r in site.requests
                                    if r.path.startswith("/page/") and int(r.path[6:]) % 4 == 0)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    result = json.loads(result_file.read_text())
    stats = result["stats"]

    # the guard, not the end of the site, stopped the crawl: 100 captcha pages were there to solve
    assert result["finish_reason"] == "vastcap_low_balance", log[-3000:]
    assert "Closing spider (vastcap_low_balance)" in log
    # the money was really spent in the sandbox, through createTask/getTaskResult, until the
    # account could not pay for the captchas in flight plus one more and keep the minimum ($0.001)
    # (a solve in flight when the spider closes is abandoned, unpaid: some money may be left)
    assert balance_end < start / 2
    solved = stats["demo/captchas_solved"]
    charged = int((start - balance_end) / PRICE)
    # every solve the spider used was paid for; a solve in flight at the close may be paid but unused
    assert 5 <= solved <= charged <= solved + 4
    assert created >= charged
    assert checks >= 2 and stats["vastcap/checks"] >= 2
    assert stats["vastcap/balance_start"] == pytest.approx(0.02)
    # the guard saw the money go (its last reading may predate the last solves in flight)
    assert float(balance_end) <= stats["vastcap/balance"] < 0.02
    assert stats["vastcap/spent"] > 0
    # the crawl did real work before it was stopped, and stopped long before the site ran out
    assert captcha_pages_fetched >= solved
    assert 10 < site_requests < 400
    pages = [json.loads(line) for line in items_file.read_text().splitlines() if line.strip()]
    assert sum(1 for p in pages if p["captcha"]) == solved
    # one clear line about the stop; no traceback; the key never in the log, even at DEBUG
    assert re.search(r"ERROR: .*vastcap_low_balance", log)
    assert "Traceback" not in log
    assert KEY not in log
    assert f"<POST {api_url}/createTask>" in log  # the API calls went through Scrapy


def test_example_project_does_not_start_on_an_empty_account(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    with Sandbox({KEY: "0.0005"}, price=PRICE) as sandbox, LocalSite(pages=50, captcha_every=4) as site:
        proc = subprocess.run(
            [sys.executable, "-m", "scrapy", "crawl", "captchas", "-a", f"site_url={site.url}",
             "-s", f"DEMO_RESULT_FILE={result_file}"],
            cwd=PROJECT, env=_env(VASTCAP_API_KEY=KEY, VASTCAP_API_URL=sandbox.url),
            capture_output=True, text=True, timeout=120,
        )
        site_requests = site.request_count
        created = sandbox.call_count("createTask")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(result_file.read_text())["finish_reason"] == "vastcap_low_balance"
    assert site_requests == 0 and created == 0  # refused before any request reached the site


def _run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vastcap_guard.demo", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=150)


def test_demo_runs_until_the_guard_stops_the_crawl() -> None:
    proc = _run_demo("--balance", "0.02", "--interval", "0.5")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # plain progress lines (not a terminal), with pages, balance, spend and checks
    progress = [line for line in out.splitlines() if re.match(r"\s*\d+\.\ds  pages ", line)]
    assert len(progress) >= 2
    assert "balance $0.0200" in progress[0]
    assert re.search(r"balance \$0\.00\d\d  spent \$0\.0[12]\d\d", progress[-1])
    assert "checks" in progress[-1]
    assert "\r" not in out
    # the summary: pages, money, why and when
    summary = out[out.index("Summary"):]
    assert re.search(r"pages crawled +\d+ requests reached the site", summary)
    assert re.search(r"money spent +\$0\.0[12]\d* of \$0\.02 \(\d+ captchas at \$0\.002", summary)
    assert re.search(r"balance +\$0\.02 -> \$0\.00\d*\n", summary)
    assert re.search(r"stopped +after \d+\.\d s \(at \d\d:\d\d:\d\d\), finish_reason: vastcap_low_balance", summary)
    assert "[vastcap_low_balance]" in summary  # the guard's own ERROR line
    assert DEMO_KEY not in out + proc.stderr


def test_demo_pause_waits_for_the_top_up_and_runs_to_the_end() -> None:
    proc = _run_demo("--pause", "--pages", "100", "--balance", "0.02", "--interval", "0.5", "--top-up-after", "2")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "scrapy crawl captchas -s VASTCAP_ON_LOW_BALANCE=pause" in out
    progress = [line for line in out.splitlines() if re.match(r"\s*\d+\.\ds  pages ", line)]
    # the live line says the crawl is paused, then that it resumed after the top-up
    paused = [i for i, line in enumerate(progress) if line.endswith("paused: waiting for a top-up")]
    resumed = [i for i, line in enumerate(progress) if "resumed after a top-up of $0.04" in line]
    assert paused and resumed and max(paused) < min(resumed), progress
    assert "(the demo tops the account up by $0.04)" in out  # 20 captcha pages at $0.002
    summary = out[out.index("Summary"):]
    assert re.search(r"pages crawled +101 requests reached the site; 101 pages scraped, 20 of them", summary)
    assert re.search(r"paused +1 time\(s\), \d+\.\d s in all; the demo topped up", summary)
    assert re.search(r"balance +\$0\.02 -> \$0\.0\d+ \(topped up by \$0\.04\)", summary)
    assert "finish_reason: finished" in summary
    assert "paused the crawl [vastcap_low_balance]" in summary  # the guard's own WARNING line
    assert "every page crawled once (finish_reason finished)" in out
    assert DEMO_KEY not in out + proc.stderr


def test_demo_runs_the_project_shipped_inside_an_installed_package(tmp_path: Path) -> None:
    # an installed package without the repository around it, laid out as the wheel lays it out
    # (pyproject.toml maps examples/scrapy_project to vastcap_guard/example_project)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "vastcap_guard", tmp_path / "vastcap_guard", ignore=ignore)
    shutil.copytree(PROJECT, tmp_path / "vastcap_guard" / "example_project", ignore=ignore)
    env = _env()
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "vastcap_guard.demo", "--balance", "0.01", "--interval", "0.5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"crawl    cd {tmp_path / 'vastcap_guard' / 'example_project'} && scrapy crawl captchas" in proc.stdout
    assert re.search(r"stopped +after .*finish_reason: vastcap_low_balance", proc.stdout)
    assert re.search(r"balance +\$0\.01 -> \$0\.00", proc.stdout)


def test_demo_fails_when_the_guard_does_not_stop_the_crawl() -> None:
    # 12 pages, 3 captchas: the balance outlasts the site, the crawl just finishes
    proc = _run_demo("--pages", "12", "--captcha-every", "5", "--balance", "0.05")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "finish_reason: finished" in proc.stdout
    assert "expected the guard to stop the crawl with vastcap_low_balance" in proc.stderr
    assert "ran out of pages" in proc.stderr


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main(["--balance", "-1"]) == 2
    assert "positive amount" in capsys.readouterr().err
    assert demo_main(["--balance", "0.001", "--price", "0.002"]) == 2
    assert "cannot pay for one captcha" in capsys.readouterr().err


def test_demo_says_clearly_when_the_example_project_is_missing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert find_project() == PROJECT.resolve()
    assert find_project(str(tmp_path)) is None
    assert demo_main(["--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "example project not found" in err and "--project" in err


def test_cli_forwards_options_to_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from vastcap_guard.cli import main as cli_main

    assert cli_main(["demo", "--balance", "-1"]) == 2
    assert "positive amount" in capsys.readouterr().err
