"""Issue 14: ``VASTCAP_ON_LOW_BALANCE = "pause"``: a crawl that waits for a top-up instead of closing.

Real crawls of a local site against the sandbox, in every reactor mode. The test drives each crawl
from outside (empties the account, waits for the pause, tops it up) and reads when the guard
decided from the crawl's signals. All crawls of this module run at once, in parallel
subprocesses, the first time a test asks for one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scrapy_crawl import KEY, MASKED, MODES, Crawl, events, in_parallel, mode_supported, run_crawl, wait_for

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite, SiteRequest

SITE_SLOT = "127.0.0.1"
INTERVAL = 0.3
PAGES = 40


@dataclass
class Run:
    crawl: Crawl
    site: list[SiteRequest]
    marks: dict[str, Any] = field(default_factory=dict)
    balance_calls: int = 0

    def signal(self, name: str) -> list[dict[str, Any]]:
        return self.crawl.signals(name)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.site]

    def site_requests_between(self, start: float, end: float = float("inf")) -> int:
        return sum(1 for r in self.site if start < r.at < end)

    def guard_lines(self, level: str) -> list[str]:
        return self.crawl.lines(level, "vastcap_guard")


def pause_settings(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": INTERVAL,
        "VASTCAP_TIMEOUT": 2, "VASTCAP_ON_LOW_BALANCE": "pause",
        # queued requests in the downloader's slot at the pause (held, then released)
        "DOWNLOAD_DELAY": 0.2,
    }
    settings.update(extra)
    return settings


def checks_while_paused(sb: Sandbox, proc: Any, n: int = 3) -> None:
    """Wait for ``n`` more balance checks: the guard keeps checking while the crawl waits."""
    calls = sb.call_count("getBalance")
    wait_for(lambda: sb.call_count("getBalance") >= calls + n, proc)


# -- the scenarios (each runs one crawl) -----------------------------------------------------------
def midrun(tmp: Path, mode: str) -> Run:
    """The balance falls below the minimum mid-crawl; the test tops it up a few checks later."""
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=PAGES) as site:
        ev, marks = tmp / "events.jsonl", {}

        def drive(proc: Any) -> None:
            wait_for(lambda: site.request_count >= 5, proc)
            sb.set_balance(KEY, 0)
            wait_for(lambda: bool(events(ev, "crawl_paused")), proc)
            checks_while_paused(sb, proc)
            marks["topup"] = time.time()
            sb.set_balance(KEY, 5)

        crawl = run_crawl(tmp, [{"url": site.url}], pause_settings(sb), mode=mode, during=drive, events=ev)
        return Run(crawl, site.requests, marks)


def spend(tmp: Path, mode: str) -> Run:
    """Paid pages ($0.001 each) on $0.02: CostGuardMiddleware finds one it cannot pay and the crawl
    pauses (no reading is below the minimum); the paid requests wait, and go on after the top-up."""
    with Sandbox({KEY: "0.02"}) as sb, LocalSite(pages=PAGES) as site:
        ev, marks = tmp / "events.jsonl", {}

        def drive(proc: Any) -> None:
            wait_for(lambda: bool(events(ev, "crawl_paused")), proc)
            checks_while_paused(sb, proc)
            marks["topup"] = time.time()
            sb.set_balance(KEY, 10)

        crawl = run_crawl(tmp, [{"url": site.url, "cost": "0.001"}], pause_settings(sb), mode=mode,
                          during=drive, events=ev)
        return Run(crawl, site.requests, marks)


def timeout(tmp: Path, mode: str) -> Run:
    """As ``spend``, but no top-up comes and the guard checks only every 60 s: the pause timer
    (VASTCAP_PAUSE_TIMEOUT = 1.5) closes the crawl."""
    with Sandbox({KEY: "0.02"}) as sb, LocalSite(pages=PAGES) as site:
        crawl = run_crawl(tmp, [{"url": site.url, "cost": "0.001"}],
                          pause_settings(sb, VASTCAP_CHECK_INTERVAL=60, VASTCAP_PAUSE_TIMEOUT=1.5), mode=mode)
        return Run(crawl, site.requests, balance_calls=sb.call_count("getBalance"))


def preflight(tmp: Path, mode: str) -> Run:
    """An empty account at start: the crawl waits, checking, with zero requests; a top-up starts it."""
    with Sandbox({KEY: "0"}) as sb, LocalSite(pages=PAGES) as site:
        ev, marks = tmp / "events.jsonl", {}

        def drive(proc: Any) -> None:
            wait_for(lambda: bool(events(ev, "crawl_paused")), proc)
            checks_while_paused(sb, proc)
            marks["requests_while_waiting"] = site.request_count
            marks["topup"] = time.time()
            sb.set_balance(KEY, 10)

        crawl = run_crawl(tmp, [{"url": site.url}], pause_settings(sb), mode=mode, during=drive, events=ev)
        return Run(crawl, site.requests, marks)


def invalid_key(tmp: Path, mode: str) -> Run:
    """Paused, then the key stops existing: only a low balance pauses; this closes at once."""
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=PAGES) as site:
        ev = tmp / "events.jsonl"

        def drive(proc: Any) -> None:
            wait_for(lambda: site.request_count >= 5, proc)
            sb.set_balance(KEY, 0)
            wait_for(lambda: bool(events(ev, "crawl_paused")), proc)
            sb.remove_account(KEY)

        crawl = run_crawl(tmp, [{"url": site.url}], pause_settings(sb), mode=mode, during=drive, events=ev)
        return Run(crawl, site.requests)


def failures(tmp: Path, mode: str) -> Run:
    """Paused, then the API fails: VASTCAP_MAX_FAILURES counts failed checks while paused too."""
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=PAGES) as site:
        ev = tmp / "events.jsonl"

        def drive(proc: Any) -> None:
            wait_for(lambda: site.request_count >= 5, proc)
            sb.set_balance(KEY, 0)
            wait_for(lambda: bool(events(ev, "crawl_paused")), proc)
            sb.fault("getBalance", "status", status=500)

        crawl = run_crawl(tmp, [{"url": site.url}], pause_settings(sb, VASTCAP_MAX_FAILURES=2), mode=mode,
                          during=drive, events=ev)
        return Run(crawl, site.requests)


def no_item_timer(tmp: Path, mode: str) -> Run:
    """Scrapy's CLOSESPIDER_TIMEOUT_NO_ITEM keeps counting while paused: it closes the paused crawl
    (no hang: the held requests are dropped), and the guard said so at start."""
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=PAGES) as site:
        def drive(proc: Any) -> None:
            wait_for(lambda: site.request_count >= 5, proc)
            sb.set_balance(KEY, 0)

        crawl = run_crawl(tmp, [{"url": site.url, "items": True}],
                          pause_settings(sb, CLOSESPIDER_TIMEOUT_NO_ITEM=2), mode=mode, during=drive)
        return Run(crawl, site.requests)


SCENARIOS: dict[str, Callable[[Path, str], Run]] = {
    "midrun": midrun, "spend": spend, "timeout": timeout, "preflight": preflight, "invalid_key": invalid_key,
}
#: asyncio only: what they prove does not depend on the reactor
ASYNCIO_ONLY: dict[str, Callable[[Path, str], Run]] = {"failures": failures, "no_item_timer": no_item_timer}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[[], Run]]:
    tmp = tmp_path_factory.mktemp("pause")
    jobs: dict[str, Callable[[], Run]] = {}
    for name, scenario in SCENARIOS.items():
        for mode in MODES:
            if mode_supported(mode):
                jobs[f"{name}-{mode}"] = (lambda s=scenario, m=mode, n=name: s(tmp / f"{n}-{m}", m))  # type: ignore[misc]
    for name, scenario in ASYNCIO_ONLY.items():
        jobs[f"{name}-asyncio"] = (lambda s=scenario, n=name: s(tmp / n, "asyncio"))  # type: ignore[misc]
    return in_parallel(jobs, workers=len(jobs))


def modes() -> list[Any]:
    return [pytest.param(m, marks=pytest.mark.skipif(not mode_supported(m), reason="needs Scrapy 2.15+"))
            for m in MODES]


def every_page_once(run: Run) -> None:
    assert len(run.paths) == PAGES + 1, len(run.paths)  # "/" and every page
    assert len(set(run.paths)) == len(run.paths), "a page was requested twice"


def held_not_sent(run: Run, paused: dict[str, Any], until: float = float("inf")) -> None:
    """From the pause decision on, nothing reached the site but what was already on its way."""
    sent = run.site_requests_between(paused["at"], until)
    assert sent <= paused["committed"].get(SITE_SLOT, 0), (sent, paused["committed"])


# -- tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", modes())
def test_a_pause_mid_crawl_then_a_top_up(runs: dict[str, Callable[[], Run]], mode: str) -> None:
    run = runs[f"midrun-{mode}"]()
    assert run.crawl.reason == "finished"
    every_page_once(run)  # nothing lost, nothing repeated
    (paused,) = run.signal("crawl_paused")
    (resumed,) = run.signal("crawl_resumed")
    assert paused["at_start"] is False and paused["error_type"] == "LowBalanceError"
    assert resumed["at"] > run.marks["topup"]  # resumed by the top-up
    assert Decimal(resumed["balance"]) == 5 and resumed["paused_seconds"] > 0
    # requests were waiting in the downloader at the pause: held there, not sent, not dropped
    assert paused["committed"][f"{SITE_SLOT}:queued"] >= 1, paused["committed"]
    held_not_sent(run, paused, resumed["at"])
    stats = run.crawl.stats()
    assert "downloader/exception_type_count/scrapy.exceptions.IgnoreRequest" not in stats
    assert stats["vastcap/pauses"] == 1
    assert 0 < stats["vastcap/paused_seconds"] == round(resumed["paused_seconds"], 1)
    # one WARNING on the pause (how to resume, the timeout), one INFO on the resume, no ERROR
    (warning,) = run.guard_lines("WARNING")
    assert "paused the crawl [vastcap_low_balance]" in warning and "No new request is sent" in warning
    assert "at or above $0.001 (every 0.3s)" in warning and "60 min (VASTCAP_PAUSE_TIMEOUT)" in warning
    info = run.guard_lines("INFO")
    assert "pause below $0.001" in info[0] and MASKED in info[0]
    assert sum("the crawl resumes after waiting" in line for line in info) == 1
    assert "Paused 1 time(s)" in info[-1]
    assert run.guard_lines("ERROR") == []


@pytest.mark.parametrize("mode", modes())
def test_a_paid_request_the_balance_cannot_pay_pauses_and_waits_for_the_top_up(
        runs: dict[str, Callable[[], Run]], mode: str) -> None:
    run = runs[f"spend-{mode}"]()
    assert run.crawl.reason == "finished"
    every_page_once(run)  # no paid request was dropped
    stats = run.crawl.stats()
    assert stats.get("vastcap/requests_blocked", 0) == 0
    assert "downloader/exception_type_count/scrapy.exceptions.IgnoreRequest" not in stats
    (paused,) = run.signal("crawl_paused")
    (resumed,) = run.signal("crawl_resumed")
    assert resumed["at"] > run.marks["topup"]
    held_not_sent(run, paused, resumed["at"])
    assert stats["vastcap/pauses"] == 1
    (warning,) = run.guard_lines("WARNING")
    # 19 pages reserved $0.019 of the $0.02: the 20th would leave $0, below the minimum; the
    # crawl resumes when the balance pays for them all and keeps the minimum
    assert "paused the crawl [vastcap_low_balance]" in warning and "would fall to $0.00," in warning
    assert "at or above $0.021" in warning
    assert run.guard_lines("ERROR") == []


@pytest.mark.parametrize("mode", modes())
def test_a_pause_longer_than_the_timeout_closes_with_low_balance(
        runs: dict[str, Callable[[], Run]], mode: str) -> None:
    run = runs[f"timeout-{mode}"]()
    assert run.crawl.reason == "vastcap_low_balance"
    (paused,) = run.signal("crawl_paused")
    (tripped,) = run.signal("guard_tripped")
    assert tripped["reason"] == "vastcap_low_balance" and tripped["at"] > paused["at"]
    held_not_sent(run, paused)
    # the pause timer decided, not a reading: no check was due (every 60 s); the pre-flight and
    # the closing reading (spend was reserved) are the only ones
    assert run.balance_calls <= 2
    stats = run.crawl.stats()
    assert stats["vastcap/pauses"] == 1 and stats["vastcap/paused_seconds"] >= 1.5
    # the paid requests that waited for a top-up were dropped, quietly
    assert stats["vastcap/requests_blocked"] >= 1
    assert stats["log_count/ERROR"] == 1
    (error,) = run.guard_lines("ERROR")
    assert "is stopping the crawl [vastcap_low_balance]" in error and "for 1.5 s of pause" in error
    assert "needed to pay for the waiting spend" in error
    assert len(run.guard_lines("WARNING")) == 1


@pytest.mark.parametrize("mode", modes())
def test_a_low_balance_at_start_waits_with_zero_requests_until_a_top_up(
        runs: dict[str, Callable[[], Run]], mode: str) -> None:
    run = runs[f"preflight-{mode}"]()
    assert run.marks["requests_while_waiting"] == 0
    assert run.crawl.reason == "finished"
    every_page_once(run)
    (paused,) = run.signal("crawl_paused")
    (resumed,) = run.signal("crawl_resumed")
    assert paused["at_start"] is True and resumed["at"] > run.marks["topup"]
    assert all(r.at > resumed["at"] for r in run.site)  # the first request came after the resume
    (warning,) = run.guard_lines("WARNING")
    assert "is holding the crawl before it starts [vastcap_low_balance]" in warning
    assert run.crawl.stats()["vastcap/pauses"] == 1
    assert run.guard_lines("ERROR") == []


@pytest.mark.parametrize("mode", modes())
def test_an_invalid_key_closes_a_paused_crawl_at_once(runs: dict[str, Callable[[], Run]], mode: str) -> None:
    run = runs[f"invalid_key-{mode}"]()
    assert run.crawl.reason == "vastcap_invalid_key"
    (paused,) = run.signal("crawl_paused")
    (tripped,) = run.signal("guard_tripped")
    assert tripped["reason"] == "vastcap_invalid_key"
    held_not_sent(run, paused)
    assert run.signal("crawl_resumed") == []
    stats = run.crawl.stats()
    # the requests held in the downloader were dropped when the crawl closed, quietly
    assert stats["downloader/exception_type_count/scrapy.exceptions.IgnoreRequest"] >= 1
    assert stats["log_count/ERROR"] == 1
    (error,) = run.guard_lines("ERROR")
    assert "is stopping the crawl [vastcap_invalid_key]" in error


def test_failed_checks_while_paused_follow_max_failures(runs: dict[str, Callable[[], Run]]) -> None:
    run = runs["failures-asyncio"]()
    assert run.crawl.reason == "vastcap_api_unavailable"
    stats = run.crawl.stats()
    assert stats["vastcap/pauses"] == 1 and stats["vastcap/check_failures"] == 2
    warnings = run.guard_lines("WARNING")
    assert len(warnings) == 2 and "paused the crawl" in warnings[0]
    assert "balance check failed (1 in a row; the crawl stops after 2)" in warnings[1]
    (error,) = run.guard_lines("ERROR")
    assert "[vastcap_api_unavailable]" in error


def test_closespider_timeout_no_item_closes_a_paused_crawl_and_the_guard_said_so(
        runs: dict[str, Callable[[], Run]]) -> None:
    run = runs["no_item_timer-asyncio"]()
    assert run.crawl.reason == "closespider_timeout_no_item"
    (paused,) = run.signal("crawl_paused")
    held_not_sent(run, paused)
    stats = run.crawl.stats()
    assert stats["vastcap/pauses"] == 1
    assert stats["downloader/exception_type_count/scrapy.exceptions.IgnoreRequest"] >= 1  # held, then dropped
    warnings = run.guard_lines("WARNING")
    assert len(warnings) == 2
    assert "CLOSESPIDER_TIMEOUT_NO_ITEM = 2 keeps counting while the crawl is paused" in warnings[0]
    assert "VASTCAP_PAUSE_TIMEOUT = 3600" in warnings[0]
    assert "paused the crawl" in warnings[1]
    assert run.guard_lines("ERROR") == []
