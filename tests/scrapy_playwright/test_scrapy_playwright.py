"""The guard inside scrapy-playwright: real crawls rendering every page in a real headless Chromium.

Each crawl runs in a subprocess (``tests/scrapy/runner.py``, asyncio reactor, which scrapy-playwright
needs); the runner watches /proc for the Chromium processes it launches. Run with
``python -m pytest -p no:twisted tests/scrapy_playwright``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scrapy"))

from scrapy_crawl import KEY, MASKED, run_crawl, wait_for

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

pytest.importorskip("scrapy_playwright")
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]

HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
PLAYWRIGHT = {
    "DOWNLOAD_HANDLERS": {"http": HANDLER, "https": HANDLER},
    "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    "PLAYWRIGHT_BROWSER_TYPE": "chromium",
    "PLAYWRIGHT_LAUNCH_OPTIONS": {
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    },
}


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10"}) as sandbox:
        yield sandbox


def settings_for(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    return {**PLAYWRIGHT, "VASTCAP_API_KEY": KEY, "VASTCAP_API_URL": sb.url, "VASTCAP_CHECK_INTERVAL": 0.3,
            "VASTCAP_TIMEOUT": 2, **extra}


def alive(pids: list[str]) -> list[str]:
    left = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"chrom" in fh.read().lower():
                    left.append(pid)
        except OSError:
            continue
    return left


def test_preflight_refusal_launches_no_browser(tmp_path: Path, sb: Sandbox) -> None:
    sb.set_balance(KEY, "0.0005")
    with LocalSite(pages=20) as site:
        # a startup context would make scrapy-playwright launch a browser as soon as the engine starts
        crawl = run_crawl(tmp_path, [{"url": site.url, "playwright": True}],
                          settings_for(sb, PLAYWRIGHT_CONTEXTS={"default": {}}),
                          enable="addon", watch_browsers=True)
        assert site.request_count == 0, site.requests
    assert crawl.reason == "vastcap_low_balance"
    assert crawl.out["browsers_seen"] == {}
    stats = crawl.stats()
    assert not any(k.startswith("playwright/") for k in stats), stats
    assert "Starting download handler" not in crawl.log  # Playwright itself was never started
    (error,) = crawl.lines("ERROR")
    assert "did not start the crawl [vastcap_low_balance]" in error and MASKED in error


@pytest.mark.parametrize("include_page", [False, True], ids=["pages-closed", "pages-left-open"])
def test_balance_drop_mid_crawl_closes_and_the_browser_is_gone(tmp_path: Path, sb: Sandbox,
                                                               include_page: bool) -> None:
    def drop(proc: Any) -> None:
        wait_for(lambda: site.request_count >= 4, proc, timeout=60)
        sb.set_balance(KEY, 0)

    # with include_page the spider keeps every page open (scrapy-playwright counts open pages
    # against PLAYWRIGHT_MAX_PAGES_PER_CONTEXT, so allow plenty): the stop finds them still open
    with LocalSite(pages=300, delay=0.02) as site:
        crawl = run_crawl(tmp_path, [{"url": site.url, "playwright": True, "include_page": include_page}],
                          settings_for(sb, CONCURRENT_REQUESTS=2, PLAYWRIGHT_MAX_PAGES_PER_CONTEXT=400),
                          enable="addon", watch_browsers=True, during=drop)
        reached = site.request_count
    assert crawl.reason == "vastcap_low_balance"
    assert 4 <= reached < 300
    stats = crawl.stats()
    assert stats["playwright/browser_count"] == 1 and stats["playwright/page_count"] >= 4
    assert crawl.out["browsers_seen"], "no Chromium process was seen: the test proves nothing"
    assert crawl.out["browsers_left"] == {}
    assert alive(list(crawl.out["browsers_seen"])) == []  # and none outlived the crawl process
    (error,) = crawl.lines("ERROR")
    assert "is stopping the crawl [vastcap_low_balance]" in error
    assert [t["reason"] for t in crawl.signals("guard_tripped")] == ["vastcap_low_balance"]
