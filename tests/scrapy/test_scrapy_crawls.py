"""End-to-end: real crawls of a local site, the guard reading a real (sandbox) VastCap API.

Each crawl runs in a subprocess (``runner.py``) so every reactor mode is covered in one pytest run.
Run with ``python -m pytest -p no:twisted tests/scrapy``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scrapy_crawl import KEY, MASKED, MODES, SCRAPY, mode_supported, run_crawl, wait_for

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

DISABLED = "vc_disabled_account_0000aaaa"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}, disabled=[DISABLED]) as sandbox:
        yield sandbox


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=40) as s:
        yield s


@pytest.fixture
def slow_site() -> Iterator[LocalSite]:
    """One request at a time (with ``CONCURRENT_REQUESTS = 1``), a few seconds in all."""
    with LocalSite(pages=300, delay=0.03) as s:
        yield s


def guard_settings(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "VASTCAP_API_KEY": KEY,
        "VASTCAP_API_URL": sb.url,
        "VASTCAP_CHECK_INTERVAL": 0.3,
        "VASTCAP_TIMEOUT": 2,
    }
    settings.update(extra)
    return settings


def modes() -> list[Any]:
    return [pytest.param(m, marks=pytest.mark.skipif(not mode_supported(m), reason="needs Scrapy 2.15+"))
            for m in MODES]


# -- a funded account ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", modes())
def test_funded_crawl_runs_to_the_end_with_stats(tmp_path: Path, sb: Sandbox, site: LocalSite, mode: str) -> None:
    crawl = run_crawl(tmp_path, [{"url": site.url}], guard_settings(sb, VASTCAP_CHECK_INTERVAL=60), mode=mode)
    assert crawl.reason == "finished"
    assert site.request_count == 41  # "/" and 40 pages
    stats = crawl.stats()
    assert stats["vastcap/balance"] == 10.0 and isinstance(stats["vastcap/balance"], float)
    assert stats["vastcap/balance_start"] == 10.0
    assert stats["vastcap/spent"] == 0.0
    assert stats["vastcap/checks"] == 1
    assert stats["vastcap/check_failures"] == 0
    assert sb.call_count("getBalance") == 1
    checked = crawl.signals("balance_checked")
    assert len(checked) == 1 and checked[0]["ok"] and checked[0]["has_guard"]
    assert all(s["main_thread"] for s in crawl.crawler()["signals"])
    assert any(MASKED in line for line in crawl.lines("INFO"))


def test_key_from_environment(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    settings = guard_settings(sb)
    del settings["VASTCAP_API_KEY"]
    import os

    env = dict(os.environ, VASTCAP_API_KEY=KEY)
    crawl = run_crawl(tmp_path, [{"url": site.url}], settings, env=env)
    assert crawl.reason == "finished"
    assert sb.calls("getBalance")[0].key == MASKED


def test_disabled_guard_is_not_installed(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    crawl = run_crawl(tmp_path, [{"url": site.url}], guard_settings(sb, VASTCAP_ENABLED=False))
    assert crawl.reason == "finished"
    assert crawl.crawler()["guard"] is False
    assert sb.call_count("getBalance") == 0
    assert not any(k.startswith("vastcap/") for k in crawl.stats())


# -- pre-flight stops: zero requests reach the site ---------------------------------------------
PREFLIGHT_CASES = {
    "vastcap_low_balance": ({}, "balance"),
    "vastcap_invalid_key": ({"VASTCAP_API_KEY": "vc_unknown_key_1234abcd"}, "key"),
    "vastcap_account_disabled": ({"VASTCAP_API_KEY": DISABLED}, "disabled"),
    "vastcap_api_unavailable": ({}, "getBalance"),
    "vastcap_api_error": ({}, "ERROR_SOMETHING_NEW"),
}


@pytest.mark.parametrize("reason", list(PREFLIGHT_CASES))
def test_preflight_stop_sends_zero_requests(tmp_path: Path, sb: Sandbox, site: LocalSite, reason: str) -> None:
    extra, words = PREFLIGHT_CASES[reason]
    if reason == "vastcap_low_balance":
        sb.set_balance(KEY, "0.0005")
    elif reason == "vastcap_api_unavailable":
        sb.fault("getBalance", "status", status=503)
    elif reason == "vastcap_api_error":
        sb.fault("getBalance", "body", body='{"error": {"errorId": 99, "errorCode": "ERROR_SOMETHING_NEW"}}')
    crawl = run_crawl(tmp_path, [{"url": site.url}], guard_settings(sb, **extra))
    assert crawl.reason == reason
    assert site.request_count == 0, site.requests
    assert crawl.stats().get("downloader/request_count", 0) == 0
    errors = crawl.lines("ERROR")
    assert len(errors) == 1 and reason in errors[0] and words in errors[0]
    assert crawl.stats()["log_count/ERROR"] == 1  # nothing else complained either
    tripped = crawl.signals("guard_tripped")
    assert [t["reason"] for t in tripped] == [reason]


@pytest.mark.parametrize("mode", modes())
def test_preflight_low_balance_in_every_reactor_mode(tmp_path: Path, sb: Sandbox, site: LocalSite,
                                                     mode: str) -> None:
    sb.set_balance(KEY, 0)
    # a short interval, so a refused crawl that went on checking would be seen doing it
    crawl = run_crawl(tmp_path, [{"url": site.url}], guard_settings(sb, VASTCAP_CHECK_INTERVAL=0.02), mode=mode)
    assert crawl.reason == "vastcap_low_balance"
    assert site.request_count == 0
    assert crawl.crawler().get("scheduled", 0) == 0  # nothing reached the downloader either
    assert crawl.stats()["vastcap/balance"] == 0.0
    (error,) = crawl.lines("ERROR")
    assert "Top up" in error and MASKED in error
    # the verdict is final: no more checks while Scrapy winds the refused crawl down (a check the
    # poller began while the pre-flight reading was on its way to Scrapy's loop came before it)
    (tripped,) = crawl.signals("guard_tripped")
    checks = [c.at for c in sb.calls("getBalance")]
    assert checks and [at for at in checks if at > tripped["at"]] == [], (checks, tripped)


def test_missing_key_closes_with_invalid_key(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    settings = guard_settings(sb)
    del settings["VASTCAP_API_KEY"]
    crawl = run_crawl(tmp_path, [{"url": site.url}], settings)
    assert crawl.reason == "vastcap_invalid_key"
    assert site.request_count == 0
    assert sb.call_count("getBalance") == 0
    (error,) = crawl.lines("ERROR")
    assert "VASTCAP_API_KEY" in error and "<no key>" not in error


@pytest.mark.parametrize(
    ("setting", "value"),
    [("VASTCAP_CHECK_INTERVAL", "soon"), ("VASTCAP_MIN_BALANCE", "-1"), ("VASTCAP_MAX_FAILURES", 1.5),
     ("VASTCAP_API_URL", "ftp://example.invalid"), ("VASTCAP_ENABLED", "perhaps")],
)
def test_bad_setting_closes_with_config_error(tmp_path: Path, sb: Sandbox, site: LocalSite, setting: str,
                                              value: Any) -> None:
    crawl = run_crawl(tmp_path, [{"url": site.url}], guard_settings(sb, **{setting: value}))
    assert crawl.reason == "vastcap_config_error"
    assert site.request_count == 0
    assert crawl.crawler().get("scheduled", 0) == 0
    assert crawl.stats()["log_count/ERROR"] == 1
    assert sb.call_count("getBalance") == 0
    (error,) = crawl.lines("ERROR")
    assert setting in error


def test_api_down_at_start_tolerated_without_require_preflight(tmp_path: Path, sb: Sandbox,
                                                               slow_site: LocalSite) -> None:
    sb.fault("getBalance", "status", status=502)

    def recover(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 3, proc)
        sb.clear_faults()

    crawl = run_crawl(
        tmp_path, [{"url": slow_site.url, "max_pages": 40}],
        guard_settings(sb, VASTCAP_REQUIRE_PREFLIGHT=False, VASTCAP_MAX_FAILURES=0, CONCURRENT_REQUESTS=1),
        during=recover,
    )
    assert crawl.reason == "finished"
    stats = crawl.stats()
    assert stats["vastcap/check_failures"] >= 1
    assert stats["vastcap/checks"] > stats["vastcap/check_failures"]  # it read the balance later
    assert stats["vastcap/balance"] == 10.0
    assert any("balance check failed" in w for w in crawl.lines("WARNING"))
    assert crawl.lines("ERROR") == []


# -- while the crawl runs -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", modes())
def test_balance_drop_mid_crawl_closes_with_low_balance(tmp_path: Path, sb: Sandbox, slow_site: LocalSite,
                                                         mode: str) -> None:
    seen: dict[str, int] = {}

    def drop(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 5, proc)
        seen["at_drop"] = slow_site.request_count
        sb.set_balance(KEY, 0)

    crawl = run_crawl(tmp_path, [{"url": slow_site.url}], guard_settings(sb, CONCURRENT_REQUESTS=1),
                      mode=mode, during=drop)
    assert crawl.reason == "vastcap_low_balance"
    # it stopped long before the end of the site (300 pages), about one interval after the drop
    assert slow_site.request_count < 150, slow_site.request_count - seen["at_drop"]
    stats = crawl.stats()
    assert stats["vastcap/balance"] == 0.0 and stats["vastcap/balance_start"] == 10.0
    assert stats["vastcap/spent"] == 10.0
    assert stats["vastcap/checks"] >= 2
    (error,) = crawl.lines("ERROR")
    assert "vastcap_low_balance" in error and MASKED in error and "Top up" in error
    tripped = crawl.signals("guard_tripped")
    assert [t["reason"] for t in tripped] == ["vastcap_low_balance"] and tripped[0]["main_thread"]
    assert tripped[0]["error_type"] == "LowBalanceError"
    checked = crawl.signals("balance_checked")
    assert len(checked) == stats["vastcap/checks"] and all(c["main_thread"] for c in checked)


def test_api_down_mid_crawl_stops_after_max_failures(tmp_path: Path, sb: Sandbox, slow_site: LocalSite) -> None:
    def outage(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 3, proc)
        sb.fault("getBalance", "html", status=502)

    crawl = run_crawl(tmp_path, [{"url": slow_site.url}],
                      guard_settings(sb, VASTCAP_MAX_FAILURES=3, CONCURRENT_REQUESTS=1), during=outage)
    assert crawl.reason == "vastcap_api_unavailable"
    assert slow_site.request_count < 300
    stats = crawl.stats()
    assert stats["vastcap/check_failures"] == 3
    warnings = [w for w in crawl.lines("WARNING") if "balance check failed" in w]
    assert len(warnings) == 2  # the 1st and 2nd failures are tolerated, the 3rd stops
    assert "1 in a row" in warnings[0] and "2 in a row" in warnings[1]
    (error,) = crawl.lines("ERROR")
    assert "vastcap_api_unavailable" in error and "VASTCAP_MAX_FAILURES" in error


def test_one_failed_check_never_stops_the_crawl(tmp_path: Path, sb: Sandbox, slow_site: LocalSite) -> None:
    def blip(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 3, proc)
        sb.fault("getBalance", "drop", times=3)  # the first try and both retries of one check

    crawl = run_crawl(tmp_path, [{"url": slow_site.url, "max_pages": 60}],
                      guard_settings(sb, CONCURRENT_REQUESTS=1), during=blip)
    assert crawl.reason == "finished"
    stats = crawl.stats()
    assert stats["vastcap/check_failures"] == 1
    assert stats["vastcap/checks"] >= 3
    assert len([w for w in crawl.lines("WARNING") if "balance check failed" in w]) == 1
    assert crawl.lines("ERROR") == []


def test_api_down_with_max_failures_zero_never_stops(tmp_path: Path, sb: Sandbox, slow_site: LocalSite) -> None:
    def outage(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 3, proc)
        sb.fault("getBalance", "status", status=500)

    crawl = run_crawl(tmp_path, [{"url": slow_site.url, "max_pages": 80}],
                      guard_settings(sb, VASTCAP_MAX_FAILURES=0, CONCURRENT_REQUESTS=1), during=outage)
    assert crawl.reason == "finished"
    assert crawl.stats()["vastcap/check_failures"] >= 3
    assert crawl.lines("ERROR") == []


def set_and_wait_for_a_poll(sb: Sandbox, balance: str, proc: Any) -> None:
    """Change the balance and wait until a poll that started after the change was delivered.

    The sandbox logs a call when it arrives; the poller starts the next call only after it handed
    the previous reading to the crawl, so the second call after the change proves the first
    (which saw the new balance) was delivered.
    """
    sb.set_balance(KEY, balance)
    calls = sb.call_count("getBalance")
    wait_for(lambda: sb.call_count("getBalance") >= calls + 2, proc)


def test_warn_threshold_logs_and_signals_once(tmp_path: Path, sb: Sandbox, slow_site: LocalSite) -> None:
    def spend(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 3, proc)
        set_and_wait_for_a_poll(sb, "4.5", proc)
        sb.set_balance(KEY, "4")

    crawl = run_crawl(tmp_path, [{"url": slow_site.url, "max_pages": 60}],
                      guard_settings(sb, VASTCAP_WARN_BALANCE=5, CONCURRENT_REQUESTS=1), during=spend)
    assert crawl.reason == "finished"
    low = crawl.signals("balance_low")
    assert len(low) == 1
    assert low[0]["balance"] == "4.5" and low[0]["threshold"] == "5" and low[0]["main_thread"]
    warnings = [w for w in crawl.lines("WARNING") if "VASTCAP_WARN_BALANCE" in w]
    assert len(warnings) == 1 and "$4.50" in warnings[0] and MASKED in warnings[0]
    assert crawl.stats()["vastcap/spent"] == 6.0


def test_spend_cap_closes_with_budget_exceeded(tmp_path: Path, sb: Sandbox, slow_site: LocalSite) -> None:
    def spend(proc: Any) -> None:
        wait_for(lambda: slow_site.request_count >= 3, proc)
        set_and_wait_for_a_poll(sb, "9.6", proc)  # spent 0.40 of a 0.50 cap: go on
        sb.set_balance(KEY, "9.45")  # 0.55: stop

    crawl = run_crawl(tmp_path, [{"url": slow_site.url}],
                      guard_settings(sb, VASTCAP_MAX_SPEND="0.50", CONCURRENT_REQUESTS=1), during=spend)
    assert crawl.reason == "vastcap_budget_exceeded"
    assert slow_site.request_count < 300
    assert crawl.stats()["vastcap/spent"] == pytest.approx(0.55)
    (error,) = crawl.lines("ERROR")
    assert "$0.55" in error and "$0.50" in error


def test_crawlers_of_one_key_share_one_poll(tmp_path: Path, sb: Sandbox) -> None:
    with LocalSite(pages=60, delay=0.03) as a, LocalSite(pages=60, delay=0.03) as b, \
            LocalSite(pages=60, delay=0.03) as c:
        crawl = run_crawl(tmp_path, [{"url": s.url} for s in (a, b, c)],
                          guard_settings(sb, CONCURRENT_REQUESTS=1))
        assert a.request_count == b.request_count == c.request_count == 61
    checks = [crawl.stats(i)["vastcap/checks"] for i in range(3)]
    assert all(crawl.crawler(i)["stats"]["finish_reason"] == "finished" for i in range(3))
    assert min(checks) >= 3  # the crawls lasted several intervals
    calls = sb.call_count("getBalance")
    # one poll per interval serves all three crawlers (pre-flights may add one or two)
    assert calls <= max(checks) + 2, (calls, checks)
    assert calls < sum(checks)


# -- spending: the middleware and ensure_funds --------------------------------------------------
def test_middleware_blocks_requests_the_balance_cannot_pay(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    # $10 pays for two $4 requests; the start request costs nothing and passes untouched
    crawl = run_crawl(tmp_path, [{"url": site.url, "cost": "4"}], guard_settings(sb, VASTCAP_CHECK_INTERVAL=60))
    assert crawl.reason == "finished"
    paths = [r.path for r in site.requests]
    assert paths[0] == "/" and len(paths) == 3, paths
    # page/0 passed; of its two children one passed, the other and the passed one's two were dropped
    assert crawl.stats()["vastcap/requests_blocked"] == 3
    assert crawl.lines("ERROR") == []


def test_middleware_drops_bad_cost_with_one_error(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    crawl = run_crawl(tmp_path, [{"url": site.url, "cost": "lots"}], guard_settings(sb, VASTCAP_CHECK_INTERVAL=60))
    assert [r.path for r in site.requests] == ["/"]
    assert crawl.stats()["vastcap/requests_blocked"] == 1
    (error,) = crawl.lines("ERROR")
    assert "vastcap_cost" in error


@pytest.mark.parametrize("mode", modes())
def test_ensure_funds_projects_and_closes(tmp_path: Path, sb: Sandbox, site: LocalSite, mode: str) -> None:
    crawl = run_crawl(tmp_path, [{"url": site.url, "ensure_funds": "3"}],
                      guard_settings(sb, VASTCAP_CHECK_INTERVAL=60, CONCURRENT_REQUESTS=1), mode=mode)
    assert crawl.reason == "vastcap_low_balance"
    record = crawl.crawler()
    assert [Decimal(p) for p in record["ensure_funds"]] == [7, 4, 1]
    assert record["ensure_funds_errors"][0] == "vastcap_low_balance"
    (error,) = crawl.lines("ERROR")
    assert "would fall to" in error
    assert [t["reason"] for t in crawl.signals("guard_tripped")] == ["vastcap_low_balance"]
    assert site.request_count < 41


def test_ensure_funds_waits_for_a_first_reading(tmp_path: Path, sb: Sandbox, site: LocalSite) -> None:
    """API down at start (tolerated): ensure_funds reads the balance before answering."""
    sb.fault("getBalance", "status", status=502, times=3)
    crawl = run_crawl(tmp_path, [{"url": site.url, "ensure_funds": "0.01", "max_pages": 3}],
                      guard_settings(sb, VASTCAP_CHECK_INTERVAL=60, VASTCAP_REQUIRE_PREFLIGHT=False,
                                     CONCURRENT_REQUESTS=1), mode="twisted")
    assert crawl.reason == "finished"
    assert Decimal(crawl.crawler()["ensure_funds"][0]) == Decimal("9.99")
    assert crawl.stats()["vastcap/check_failures"] == 1


def test_scrapy_version_is_supported() -> None:
    assert SCRAPY >= (2, 13)
