"""The add-on: ``ADDONS = {"vastcap_guard.scrapy.Addon": 500}`` and nothing else.

Unit tests resolve the settings the way Scrapy does (real ``Crawler``, real ``AddonManager``, the
component lists built from ``X`` + ``X_BASE``); crawl tests compare a crawl configured only through
``ADDONS`` with the same crawl configured through ``EXTENSIONS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.utils.conf import build_component_list
from scrapy_crawl import KEY, MASKED, run_crawl, wait_for

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.scrapy import EXTENSION_PRIORITY, MIDDLEWARE_PRIORITY, BalanceGuard, CostGuardMiddleware
from vastcap_guard.site import LocalSite

EXT = "vastcap_guard.scrapy.BalanceGuard"
MW = "vastcap_guard.scrapy.CostGuardMiddleware"
ADDONS = {"ADDONS": {"vastcap_guard.scrapy.Addon": 500}}


def resolved(settings: dict[str, Any], priority: str = "project") -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(extensions, downloader middlewares) as Scrapy resolves them after the add-ons ran."""
    crawler = Crawler(Spider, {})
    crawler.settings.setdict(settings, priority=priority)
    crawler.addons.load_settings(crawler.settings)
    ext = crawler.settings.getwithbase("EXTENSIONS")
    mws = crawler.settings.getwithbase("DOWNLOADER_MIDDLEWARES")
    return dict(ext), dict(mws)


def enabled(components: dict[Any, Any]) -> list[str]:
    names = []
    for c in build_component_list(components):
        names.append(c if isinstance(c, str) else f"{c.__module__}.{c.__qualname__}")
    return [n.replace(".extension.", ".").replace(".middleware.", ".") for n in names]


# -- settings resolution ------------------------------------------------------------------------
def test_addon_enables_both_at_the_documented_priorities() -> None:
    ext, mws = resolved(ADDONS)
    assert ext[EXT] == EXTENSION_PRIORITY == 500
    assert mws[MW] == MIDDLEWARE_PRIORITY == 50
    order = enabled(mws)
    # early: before retries, redirects, proxies and cookies
    for later in ("RetryMiddleware", "RedirectMiddleware", "HttpProxyMiddleware", "CookiesMiddleware"):
        assert order.index(MW) < next(i for i, n in enumerate(order) if n.endswith(later))


def test_without_the_addon_nothing_is_enabled() -> None:
    ext, mws = resolved({})
    assert EXT not in enabled(ext) and MW not in enabled(mws)


@pytest.mark.parametrize("key", [EXT, BalanceGuard], ids=["path", "class"])
def test_users_own_extension_priority_wins(key: Any) -> None:
    ext, mws = resolved({**ADDONS, "EXTENSIONS": {key: 10}})
    assert ext[key] == 10
    assert len([k for k in ext if k in (EXT, BalanceGuard)]) == 1
    assert enabled(ext).count(EXT) == 1  # not added a second time under another spelling
    assert mws[MW] == 50  # the other component is still enabled


@pytest.mark.parametrize("key", [MW, CostGuardMiddleware], ids=["path", "class"])
def test_users_none_disables_the_middleware(key: Any) -> None:
    ext, mws = resolved({**ADDONS, "DOWNLOADER_MIDDLEWARES": {key: None}})
    assert MW not in enabled(mws)
    assert EXT in enabled(ext)


def test_users_none_disables_the_extension() -> None:
    ext, _ = resolved({**ADDONS, "EXTENSIONS": {EXT: None}})
    assert EXT not in enabled(ext)


def test_an_entry_in_the_base_dict_counts_as_the_users() -> None:
    ext, mws = resolved({**ADDONS, "EXTENSIONS_BASE": {EXT: None}, "DOWNLOADER_MIDDLEWARES_BASE": {MW: 900},
                         "EXTENSIONS": {"scrapy.extensions.logstats.LogStats": 1},
                         "DOWNLOADER_MIDDLEWARES": {"scrapy.downloadermiddlewares.stats.DownloaderStats": 1}},
                        priority="cmdline")
    assert EXT not in enabled(ext)
    assert mws[MW] == 900 and enabled(mws).count(MW) == 1


@pytest.mark.parametrize("priority", ["default", "project", "spider", "cmdline"])
def test_setting_priorities_are_kept(priority: str) -> None:
    """Whatever priority the user's dicts were set with, the add-on adds to them and keeps it."""
    crawler = Crawler(Spider, {})
    crawler.settings.setdict({**ADDONS, "EXTENSIONS": {"scrapy.extensions.logstats.LogStats": 1},
                              "DOWNLOADER_MIDDLEWARES": {MW: 77}}, priority=priority)
    before = crawler.settings.getpriority("EXTENSIONS")
    crawler.addons.load_settings(crawler.settings)
    ext = crawler.settings.getdict("EXTENSIONS")
    assert ext == {"scrapy.extensions.logstats.LogStats": 1, EXT: 500}
    assert crawler.settings.getdict("DOWNLOADER_MIDDLEWARES") == {MW: 77}
    assert crawler.settings.getpriority("EXTENSIONS") == before


@pytest.mark.parametrize("value", [False, "false", "0"])
def test_off_switch_enables_nothing(value: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="vastcap_guard")
    ext, mws = resolved({**ADDONS, "VASTCAP_ENABLED": value})
    assert EXT not in enabled(ext) and MW not in enabled(mws)
    assert [r.message for r in caplog.records if r.name.startswith("vastcap_guard")] == [
        "vastcap-guard is off (VASTCAP_ENABLED = False): the crawl is not guarded."
    ]


def test_bad_off_switch_still_enables_the_extension_which_reports_it() -> None:
    ext, _ = resolved({**ADDONS, "VASTCAP_ENABLED": "perhaps"})
    assert EXT in enabled(ext)


# -- real crawls --------------------------------------------------------------------------------
@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}) as sandbox:
        yield sandbox


def settings_for(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    return {"VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": 0.3,
            "VASTCAP_TIMEOUT": 2, **extra}


def _normalised(lines: list[str]) -> list[str]:
    return [re.sub(r"^\S+ \S+ ", "", line) for line in lines]  # drop the timestamp


def test_preflight_refusal_through_the_addon_is_the_extensions_one(tmp_path: Path, sb: Sandbox) -> None:
    sb.set_balance(KEY, "0.0005")
    outcomes = []
    for enable in ("addon", "extensions"):
        with LocalSite(pages=20) as site:
            crawl = run_crawl(tmp_path / enable, [{"url": site.url}], settings_for(sb), enable=enable)
            assert crawl.reason == "vastcap_low_balance"
            assert site.request_count == 0, site.requests
            assert crawl.crawler().get("scheduled", 0) == 0
            assert crawl.crawler()["guard"] is True
            outcomes.append((
                crawl.reason,
                {k: v for k, v in crawl.stats().items() if k.startswith("vastcap/")},
                [s["signal"] for s in crawl.crawler()["signals"]],
                _normalised(crawl.lines("ERROR")),
                _normalised(crawl.lines("WARNING")),
            ))
    assert outcomes[0] == outcomes[1]
    (error,) = outcomes[0][3]
    assert "did not start the crawl [vastcap_low_balance]" in error and MASKED in error


def test_mid_crawl_stop_and_cost_middleware_through_the_addon(tmp_path: Path, sb: Sandbox) -> None:
    def drop(proc: Any) -> None:
        wait_for(lambda: site.request_count >= 5, proc)
        sb.set_balance(KEY, 0)

    with LocalSite(pages=300, delay=0.03) as site:
        crawl = run_crawl(tmp_path, [{"url": site.url}], settings_for(sb, CONCURRENT_REQUESTS=1),
                          enable="addon", during=drop)
        reached = site.request_count
    assert crawl.reason == "vastcap_low_balance"
    assert reached < 150
    stats = crawl.stats()
    assert stats["vastcap/balance"] == 0.0 and stats["vastcap/checks"] >= 2
    (error,) = crawl.lines("ERROR")
    assert "is stopping the crawl [vastcap_low_balance]" in error
    assert [t["reason"] for t in crawl.signals("guard_tripped")] == ["vastcap_low_balance"]


def test_cost_middleware_is_enabled_by_the_addon(tmp_path: Path, sb: Sandbox) -> None:
    with LocalSite(pages=40) as site:
        crawl = run_crawl(tmp_path, [{"url": site.url, "cost": "4"}],
                          settings_for(sb, VASTCAP_CHECK_INTERVAL=60), enable="addon")
        paths = [r.path for r in site.requests]
    # as with DOWNLOADER_MIDDLEWARES: $10 pays for two $4 requests
    assert crawl.reason == "finished"
    assert paths[0] == "/" and len(paths) == 3, paths
    assert crawl.stats()["vastcap/requests_blocked"] == 3


def _enabled_list(log: str, what: str) -> list[str]:
    match = re.search(rf"Enabled {what}:\n(\[.*?\])", log, re.S)
    assert match, f"no 'Enabled {what}' line"
    return re.findall(r"'([^']+)'", match.group(1))


def test_users_priority_and_none_are_respected_in_a_crawl(tmp_path: Path, sb: Sandbox) -> None:
    with LocalSite(pages=10) as site:
        crawl = run_crawl(
            tmp_path, [{"url": site.url, "cost": "4"}],
            settings_for(sb, VASTCAP_CHECK_INTERVAL=60, EXTENSIONS={EXT: 999},
                         DOWNLOADER_MIDDLEWARES={MW: None}),
            enable="addon",
        )
        reached = site.request_count
    assert crawl.reason == "finished"
    assert reached == 11  # the middleware is off: nothing was dropped
    assert "vastcap/requests_blocked" not in crawl.stats()
    assert crawl.stats()["vastcap/checks"] == 1  # the extension runs
    exts = _enabled_list(crawl.log, "extensions")
    assert exts.count(EXT) == 1 and exts[-1] == EXT  # at the user's 999: after every built-in one
    assert MW not in _enabled_list(crawl.log, "downloader middlewares")


def test_off_switch_through_the_addon(tmp_path: Path, sb: Sandbox) -> None:
    with LocalSite(pages=10) as site:
        crawl = run_crawl(tmp_path, [{"url": site.url, "cost": "40"}],
                          settings_for(sb, VASTCAP_ENABLED=False), enable="addon")
        reached = site.request_count
    assert crawl.reason == "finished" and reached == 11
    assert crawl.crawler()["guard"] is False
    assert sb.call_count("getBalance") == 0
    assert not any(k.startswith("vastcap/") for k in crawl.stats())
    assert len([line for line in crawl.lines("INFO") if "VASTCAP_ENABLED = False" in line]) == 1
