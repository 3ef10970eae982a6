"""vastcap_guard.testing.run_spider: the helper users test their own spiders with, run for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite
from vastcap_guard.testing import run_spider

pytest.importorskip("scrapy")

PROJECT = Path(__file__).resolve().parent.parent / "examples" / "scrapy_project"


def test_a_spider_refused_at_start(vastcap_sandbox: Sandbox) -> None:
    vastcap_sandbox.set_balance(vastcap_sandbox.key, 0)
    with LocalSite(pages=20) as site:
        result = run_spider("testing_spiders:LinksSpider", sandbox=vastcap_sandbox,
                            spider_kwargs={"start": site.url})
        assert site.request_count == 0
    assert result.finish_reason == "vastcap_low_balance" and result.stopped_by_guard
    assert result.stats.get("downloader/request_count") is None
    assert "did not start the crawl [vastcap_low_balance]" in result.log
    assert vastcap_sandbox.key not in result.log


def test_a_funded_spider_finishes_with_its_stats(vastcap_sandbox: Sandbox) -> None:
    with LocalSite(pages=20) as site:
        result = run_spider("testing_spiders:LinksSpider", sandbox=vastcap_sandbox,
                            spider_kwargs={"start": site.url})
    assert result.finish_reason == "finished" and not result.stopped_by_guard
    assert result.stats["vastcap/balance"] == 10.0 and result.stats["response_received_count"] >= 20


def test_a_spider_of_a_project_with_its_settings(tmp_path: Path) -> None:
    with Sandbox({"vc_project_test_key_0001": "0.02"}, price="0.002") as sb, \
            LocalSite(pages=200, captcha_every=4) as site:
        result = run_spider("captchas", project=PROJECT, sandbox=sb, spider_kwargs={"site_url": site.url},
                            settings={"VASTCAP_CHECK_INTERVAL": 0.5, "LOG_LEVEL": "INFO"})
    assert result.finish_reason == "vastcap_low_balance", result.log[-2000:]
    assert result.stats["demo/captchas_solved"] >= 1


def test_a_spider_defined_in_a_test_function_is_refused_clearly(vastcap_sandbox: Sandbox) -> None:
    import scrapy

    class Local(scrapy.Spider):
        name = "local"

    with pytest.raises(ValueError, match="importable spider"):
        run_spider(Local, sandbox=vastcap_sandbox)
