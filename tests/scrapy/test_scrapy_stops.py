"""Issue 15: what a stop must not let through, and what it must count.

- Requests waiting in Scrapy's downloader (per-slot queues, ``DOWNLOAD_DELAY = 1`` as
  ``scrapy startproject`` writes it) all still went out after a stop, one per second: none may
  reach a site or the solver API after the decision, and paid ones release their reservation.
- ``VASTCAP_MAX_SPEND`` with a solver that debits seconds after ``createTask``: the account is
  charged no more than the cap, and ``vastcap/spent`` is what it was charged.
- A pipeline that spends: ``ensure_funds_for_item`` drops items with one line, no traceback.

All crawls of this module run at once, in parallel subprocesses, the first time a test asks for one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scrapy_crawl import KEY, MODES, Crawl, in_parallel, mode_supported, requests_after, run_crawl, wait_for

from vastcap_guard.sandbox import Call, Sandbox
from vastcap_guard.site import LocalSite, SiteRequest

REPO = Path(__file__).resolve().parents[2]
PAGE_COST = Decimal("0.01")
TASK_COST = Decimal("0.002")
API_SLOT = "vastcap-api"
SITE_SLOT = "127.0.0.1"
SLOW_KEY = "vc_test_slow_debit_8c1d"
SLOW_CAP, SLOW_START = Decimal("0.005"), Decimal("1")


def modes() -> list[Any]:
    return [pytest.param(m, marks=pytest.mark.skipif(not mode_supported(m), reason="needs Scrapy 2.15+"))
            for m in MODES]


@dataclass
class Outcome:
    crawl: Crawl
    site: list[SiteRequest]
    api: list[Call]
    charged: Decimal = Decimal(0)

    def decision(self) -> dict[str, Any]:
        (tripped,) = self.crawl.signals("guard_tripped")
        return tripped




@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[[], Outcome]]:
    tmp = tmp_path_factory.mktemp("stops")
    jobs: dict[str, Callable[[], Outcome]] = {"slow_debit": lambda: slow_debit_scenario(tmp / "slow_debit")}
    for mode in MODES:
        if mode_supported(mode):
            jobs[f"queued-{mode}"] = lambda m=mode: queued_scenario(tmp / f"queued-{m}", m)  # type: ignore[misc]
            jobs[f"pipeline-{mode}"] = lambda m=mode: pipeline_scenario(tmp / f"pipeline-{m}", m)  # type: ignore[misc]
    return in_parallel(jobs, workers=7)


# -- requests queued in the downloader --------------------------------------------------------------
def queued_scenario(tmp: Path, mode: str) -> Outcome:
    """Paid pages and a paid createTask per page, DOWNLOAD_DELAY = 1: the account is disabled
    after a few pages, so the stop comes while both slots hold queued requests."""
    with Sandbox({KEY: "10"}, price=str(TASK_COST)) as sb, LocalSite(pages=200) as site:
        def disable(proc: Any) -> None:
            wait_for(lambda: site.request_count >= 4, proc)
            sb.disable(KEY)

        crawl = run_crawl(
            tmp, [{"url": site.url, "cost": str(PAGE_COST),
                   "solve": {"api": sb.url, "key": KEY, "cost": str(TASK_COST)}}],
            {"VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": 0.3,
             "VASTCAP_TIMEOUT": 2, "DOWNLOAD_DELAY": 1, "CONCURRENT_REQUESTS_PER_DOMAIN": 1},
            mode=mode, during=disable,
        )
        return Outcome(crawl, site.requests, [c for c in sb.calls() if c.method != "getBalance"])


@pytest.mark.parametrize("mode", modes())
def test_no_queued_request_reaches_a_site_or_the_api_after_a_stop(
        runs: dict[str, Callable[[], Outcome]], mode: str) -> None:
    out = runs[f"queued-{mode}"]()
    crawl = out.crawl
    assert crawl.reason == "vastcap_account_disabled"
    decision = out.decision()
    committed = decision["committed"]
    # the stop found requests waiting in both slots (else this test would prove nothing)
    assert committed[f"{SITE_SLOT}:queued"] >= 1 and committed[f"{API_SLOT}:queued"] >= 1, committed
    # nothing reached the site or the API after the decision but what was already on its way
    site_after = requests_after([r.at for r in out.site], decision["at"])
    api_after = requests_after([c.at for c in out.api], decision["at"])
    assert site_after <= committed[SITE_SLOT], (site_after, committed)
    assert api_after <= committed[API_SLOT], (api_after, committed)
    # dropped quietly: IgnoreRequest, which Scrapy neither logs nor retries; one ERROR line
    stats = crawl.stats()
    queued_at_decision = committed[f"{SITE_SLOT}:queued"] + committed[f"{API_SLOT}:queued"]
    assert stats["downloader/exception_type_count/scrapy.exceptions.IgnoreRequest"] >= queued_at_decision
    assert stats["log_count/ERROR"] == 1
    (error,) = crawl.lines("ERROR")
    assert "vastcap_account_disabled" in error
    # the API requests' errbacks saw the drop (IgnoreRequest), and no paid one kept its
    # reservation (the runner's errback asserts it)
    api_errors = crawl.crawler()["api_errors"]
    assert len(api_errors) >= committed[f"{API_SLOT}:queued"]
    assert {kind for _, kind in api_errors} == {"IgnoreRequest"}


@pytest.mark.parametrize("mode", modes())
def test_dropped_paid_requests_release_their_reservation(runs: dict[str, Callable[[], Outcome]],
                                                          mode: str) -> None:
    out = runs[f"queued-{mode}"]()
    paid_pages = sum(1 for r in out.site if r.path != "/")  # the start request costs nothing
    tasks = sum(1 for c in out.api if c.method == "createTask")
    spent = Decimal(str(out.crawl.stats()["vastcap/spent"]))
    # what stays reserved is exactly what was sent and no reading showed yet: the requests
    # dropped from the queues gave theirs back
    sent = paid_pages * PAGE_COST + tasks * TASK_COST
    assert Decimal(out.crawl.crawler()["pending_spend"]) == max(sent - spent, Decimal(0))


# -- VASTCAP_MAX_SPEND with a slow debit ------------------------------------------------------------
def slow_debit_scenario(tmp: Path) -> Outcome:
    """The issue's setup: cap $0.005, a check every second, the sandbox debiting each solve on
    getTaskResult 2 s after createTask; the example project's paid createTask requests."""
    tmp.mkdir(parents=True, exist_ok=True)
    result_file = tmp / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRAPY_", "VASTCAP_", "DEMO_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    with Sandbox({SLOW_KEY: SLOW_START}, price=TASK_COST, solve_delay=2) as sb, \
            LocalSite(pages=300, captcha_every=12) as site:
        env.update(VASTCAP_API_KEY=SLOW_KEY, VASTCAP_API_URL=sb.url)
        proc = subprocess.run(
            [sys.executable, "-m", "scrapy", "crawl", "captchas", "-a", f"site_url={site.url}",
             "-s", f"VASTCAP_MAX_SPEND={SLOW_CAP}", "-s", "VASTCAP_CHECK_INTERVAL=1", "-s", "DOWNLOAD_DELAY=0.25",
             "-s", f"DEMO_RESULT_FILE={result_file}", "-s", "LOG_LEVEL=DEBUG"],
            cwd=REPO / "examples" / "scrapy_project", env=env, capture_output=True, text=True, timeout=120,
        )
        charged = SLOW_START - sb.balance(SLOW_KEY)
        api = [c for c in sb.calls() if c.method != "getBalance"]
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    result = json.loads(result_file.read_text())
    crawl = Crawl({"crawlers": [{"stats": result["stats"], "signals": []}]}, log, proc.stderr)
    return Outcome(crawl, site.requests, api, charged)


def test_spend_cap_with_a_slow_solver_charges_at_most_the_cap_and_counts_it_all(
        runs: dict[str, Callable[[], Outcome]]) -> None:
    out = runs["slow_debit"]()
    log, stats = out.crawl.log, out.crawl.stats()
    assert stats["finish_reason"] == "vastcap_budget_exceeded", log[-3000:]
    created = sum(1 for c in out.api if c.method == "createTask")
    assert out.charged > 0 and created >= 1  # it did spend
    # the cap holds: every createTask that passed was reserved until a reading showed its debit
    assert out.charged <= SLOW_CAP, (out.charged, created)
    # and the guard counted all of it (a closing reading catches the debits after its last check)
    assert Decimal(str(stats["vastcap/spent"])) == out.charged
    assert "Traceback" not in log and SLOW_KEY not in log
    assert len(re.findall(r"\] ERROR: ", log)) == 1


# -- a pipeline that spends -------------------------------------------------------------------------
def pipeline_scenario(tmp: Path, mode: str) -> Outcome:
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=40) as site:
        crawl = run_crawl(
            tmp, [{"url": site.url, "items": True, "pipeline_cost": "0.002"}],
            {"VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": 60,
             "VASTCAP_MAX_SPEND": "0.005", "DOWNLOAD_DELAY": 0.5},
            mode=mode,
        )
        return Outcome(crawl, site.requests, [])


@pytest.mark.parametrize("mode", modes())
def test_a_pipeline_that_cannot_pay_drops_items_quietly_and_the_crawl_closes(
        runs: dict[str, Callable[[], Outcome]], mode: str) -> None:
    crawl = runs[f"pipeline-{mode}"]().crawl
    assert crawl.reason == "vastcap_budget_exceeded"
    stats = crawl.stats()
    assert stats["item_scraped_count"] == 2  # $0.004 of the $0.005 cap
    dropped = stats["item_dropped_count"]
    assert stats["item_dropped_reasons_count/GuardDropItem"] == dropped
    # the item that tripped the guard, and the few whose responses were already on their way
    assert 1 <= dropped <= 3, dropped
    lines = [ln for ln in crawl.log.splitlines() if "Dropped:" in ln]
    assert len(lines) == dropped
    assert "] WARNING: Dropped: vastcap-guard: item not processed" in lines[0]
    assert "[vastcap_budget_exceeded]" in lines[0]
    assert all("] DEBUG: Dropped:" in ln for ln in lines[1:])
    # no traceback (run_crawl checks), no "Error processing", one ERROR line: the guard's
    assert "Error processing" not in crawl.log
    assert stats["log_count/ERROR"] == 1
    (error,) = crawl.lines("ERROR")
    assert "is stopping the crawl [vastcap_budget_exceeded]" in error
