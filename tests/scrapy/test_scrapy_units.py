"""Unit tests of the Scrapy adapter's pieces, with real Scrapy objects and no running crawl."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.settings import Settings
from scrapy.statscollectors import MemoryStatsCollector

from vastcap_guard import DEFAULT_API_URL, ConfigError, InvalidKeyError, LowBalanceError, Reading
from vastcap_guard.scrapy import (
    SETTING_NAMES,
    BalanceGuard,
    CostGuardMiddleware,
    GuardDropItem,
    config_from_settings,
    get_guard,
)
from vastcap_guard.scrapy._compat import scrapy_version
from vastcap_guard.scrapy.extension import parse_cost

KEY = "vc_unit_S3CR3T_key_55aa77cc"


def make_crawler(**settings: Any) -> Crawler:
    crawler = Crawler(Spider, {"VASTCAP_API_KEY": KEY, **settings})
    crawler.stats = MemoryStatsCollector(crawler)
    return crawler


# -- settings -----------------------------------------------------------------------------------
def test_defaults_follow_the_contract() -> None:
    config = config_from_settings(Settings({"VASTCAP_API_KEY": KEY}), environ={})
    assert config.api_key == KEY
    assert config.api_url == DEFAULT_API_URL  # the public API (never contacted by the tests)
    assert config.interval == 60
    assert config.min_balance == Decimal("0.001")
    assert config.warn_balance is None and config.max_spend is None
    assert config.timeout == 10
    assert config.max_failures == 3
    assert config.require_preflight is True
    assert config.on_low_balance == "close" and config.pause_timeout == 3600


def test_string_settings_from_the_command_line() -> None:
    config = config_from_settings(Settings({
        "VASTCAP_API_KEY": KEY, "VASTCAP_CHECK_INTERVAL": "0.5", "VASTCAP_MIN_BALANCE": "0.10",
        "VASTCAP_WARN_BALANCE": "2", "VASTCAP_MAX_SPEND": "1.5", "VASTCAP_MAX_FAILURES": "0",
        "VASTCAP_TIMEOUT": "3", "VASTCAP_REQUIRE_PREFLIGHT": "false",
        "VASTCAP_API_URL": "http://127.0.0.1:9/api/solver/",
        "VASTCAP_ON_LOW_BALANCE": " Pause ", "VASTCAP_PAUSE_TIMEOUT": "90",
    }), environ={})
    assert config.on_low_balance == "pause" and config.pause_timeout == 90
    assert config.interval == 0.5
    assert config.min_balance == Decimal("0.10")
    assert config.warn_balance == Decimal(2) and config.max_spend == Decimal("1.5")
    assert config.max_failures == 0 and config.timeout == 3
    assert config.require_preflight is False
    assert config.api_url == "http://127.0.0.1:9/api/solver"


def test_key_falls_back_to_the_environment() -> None:
    config = config_from_settings(Settings({}), environ={"VASTCAP_API_KEY": KEY})
    assert config.api_key == KEY
    assert config_from_settings(Settings({}), environ={}).api_key is None


@pytest.mark.parametrize(
    ("setting", "value"),
    [("VASTCAP_CHECK_INTERVAL", "0"), ("VASTCAP_CHECK_INTERVAL", "soon"), ("VASTCAP_MIN_BALANCE", "-1"),
     ("VASTCAP_WARN_BALANCE", "lots"), ("VASTCAP_MAX_SPEND", "0"), ("VASTCAP_MAX_FAILURES", "-1"),
     ("VASTCAP_TIMEOUT", "nan"), ("VASTCAP_REQUIRE_PREFLIGHT", "maybe"), ("VASTCAP_API_URL", "ftp://x"),
     ("VASTCAP_API_KEY", 12345), ("VASTCAP_ON_LOW_BALANCE", "wait"), ("VASTCAP_PAUSE_TIMEOUT", "0"),
     ("VASTCAP_PAUSE_TIMEOUT", "forever")],
)
def test_errors_name_the_setting(setting: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_settings(Settings({"VASTCAP_API_KEY": KEY, setting: value}), environ={})
    assert info.value.setting == setting
    assert setting in str(info.value)
    assert info.value.reason == "vastcap_config_error"


def test_setting_names_cover_every_config_field() -> None:
    assert set(SETTING_NAMES.values()) == {
        "VASTCAP_API_KEY", "VASTCAP_API_URL", "VASTCAP_CHECK_INTERVAL", "VASTCAP_MIN_BALANCE",
        "VASTCAP_WARN_BALANCE", "VASTCAP_MAX_SPEND", "VASTCAP_MAX_FAILURES", "VASTCAP_TIMEOUT",
        "VASTCAP_REQUIRE_PREFLIGHT", "VASTCAP_WARN_MINUTES", "VASTCAP_SHARED_STATE",
        "VASTCAP_ON_LOW_BALANCE", "VASTCAP_PAUSE_TIMEOUT",
    }
    # and every GuardConfig field a user sets has a Scrapy setting
    from dataclasses import fields

    from vastcap_guard import GuardConfig

    assert set(SETTING_NAMES) == {f.name for f in fields(GuardConfig)} - {"key_source"}


@pytest.mark.parametrize(("text", "value"), [("3", Decimal(3)), (0.25, Decimal("0.25")), (Decimal("0"), Decimal(0))])
def test_parse_cost(text: Any, value: Decimal) -> None:
    assert parse_cost(text) == value


@pytest.mark.parametrize("bad", [None, True, "lots", "-1", "nan", "inf", float("inf")])
def test_parse_cost_rejects(bad: Any) -> None:
    with pytest.raises(ConfigError):
        parse_cost(bad)


@pytest.mark.parametrize(("text", "version"), [("2.13.4", (2, 13)), ("2.19.0", (2, 19)), ("2.20.0rc1", (2, 20)),
                                                ("3", (3, 0))])
def test_scrapy_version(text: str, version: tuple[int, int]) -> None:
    assert scrapy_version(text) == version


# -- the extension object -----------------------------------------------------------------------
def test_off_switch_raises_not_configured() -> None:
    crawler = make_crawler(VASTCAP_ENABLED=False)
    with pytest.raises(NotConfigured):
        BalanceGuard.from_crawler(crawler)
    assert get_guard(crawler) is None


def test_bad_setting_trips_instead_of_raising() -> None:
    crawler = make_crawler(VASTCAP_MIN_BALANCE="a lot")
    ext = BalanceGuard.from_crawler(crawler)
    assert get_guard(crawler) is ext
    assert ext.reason == "vastcap_config_error"
    assert isinstance(ext.tripped, ConfigError) and ext.tripped.setting == "VASTCAP_MIN_BALANCE"


def test_repr_masks_the_key() -> None:
    ext = BalanceGuard.from_crawler(make_crawler())
    assert KEY not in repr(ext) and "vc_…77cc" in repr(ext)
    assert KEY not in repr(ext.config)


def test_missing_key_is_a_preflight_stop() -> None:
    crawler = Crawler(Spider, {})
    ext = BalanceGuard.from_crawler(crawler)
    assert isinstance(ext.guard.preflight_error(), InvalidKeyError)


# -- the middleware -----------------------------------------------------------------------------
class _Bridge:
    """Records the close the guard schedules (no loop runs in a unit test)."""

    def __init__(self) -> None:
        self.later: list[tuple[Any, ...]] = []

    def call_later(self, delay: float, func: Any, *args: Any) -> None:
        self.later.append((func.__name__, *args))


def started_guard(crawler: Crawler, balance: str = "10") -> BalanceGuard:
    ext = BalanceGuard.from_crawler(crawler)
    ext._bridge = _Bridge()  # type: ignore[assignment]
    ext.run.started = True
    ext.guard.observe(Reading(Decimal(balance), seq=1))
    return ext


def test_middleware_passes_requests_without_a_cost() -> None:
    crawler = make_crawler()
    ext = started_guard(crawler, "0.0001")
    ext.guard.trip(LowBalanceError("low", balance=Decimal(0), minimum=Decimal("0.001")))
    mw = CostGuardMiddleware.from_crawler(crawler)
    assert mw.process_request(Request("http://127.0.0.1/free")) is None
    assert crawler.stats.get_value("vastcap/requests_blocked") is None


def test_middleware_passes_everything_without_the_extension() -> None:
    crawler = make_crawler()
    mw = CostGuardMiddleware.from_crawler(crawler)
    assert mw.process_request(Request("http://127.0.0.1/", meta={"vastcap_cost": 100})) is None


def test_middleware_projects_the_balance_and_blocks() -> None:
    crawler = make_crawler()
    ext = started_guard(crawler, "1")
    mw = CostGuardMiddleware.from_crawler(crawler)

    def paid() -> Request:
        return Request("http://127.0.0.1/solve", meta={"vastcap_cost": "0.4"})

    assert mw.process_request(paid()) is None  # 0.6 left
    assert mw.process_request(paid()) is None  # 0.2 left
    with pytest.raises(IgnoreRequest):
        mw.process_request(paid())  # would be -0.2
    assert crawler.stats.get_value("vastcap/requests_blocked") == 1
    # a refusal is not a stop: the guard has not tripped and nothing is closed
    assert ext.tripped is None and ext._bridge.later == []  # type: ignore[union-attr]
    # a reading that shows the spend settles the reservations; after a top-up the requests pass again
    ext.guard.observe(Reading(Decimal("0.2"), seq=2))
    with pytest.raises(IgnoreRequest):
        mw.process_request(paid())
    ext.guard.observe(Reading(Decimal("1"), seq=3))
    assert mw.process_request(paid()) is None
    assert crawler.stats.get_value("vastcap/requests_blocked") == 2


def test_middleware_releases_the_reservation_of_a_request_that_fails_before_it_is_sent() -> None:
    crawler = make_crawler()
    ext = started_guard(crawler, "1")
    mw = CostGuardMiddleware.from_crawler(crawler)
    sent, dropped = (Request(f"http://127.0.0.1/solve/{i}", meta={"vastcap_cost": "0.3"}) for i in (1, 2))
    assert mw.process_request(sent) is None and mw.process_request(dropped) is None
    assert ext.guard.pending_spend == Decimal("0.6")
    mw.process_response(sent, object())  # it reached the API: its reservation stays
    assert mw.process_exception(dropped, IgnoreRequest("dropped")) is None  # it never left
    assert ext.guard.pending_spend == Decimal("0.3")
    mw.process_exception(dropped, IgnoreRequest("again"))  # released once only
    mw.process_exception(sent, IgnoreRequest("late"))  # an answered request spent its reservation
    assert ext.guard.pending_spend == Decimal("0.3")
    # a retry (a copy of a request whose answer this middleware never saw) reserves afresh, once
    retry = Request("http://127.0.0.1/solve/3", meta={"vastcap_cost": "0.3"})
    assert mw.process_request(retry) is None
    again = retry.copy()
    assert mw.process_request(again) is None
    assert ext.guard.pending_spend == Decimal("0.6")
    # a request refused for the balance holds nothing to release
    refused = Request("http://127.0.0.1/solve/4", meta={"vastcap_cost": "0.5"})
    with pytest.raises(IgnoreRequest):
        mw.process_request(refused)
    mw.process_exception(refused, IgnoreRequest("refused"))
    assert ext.guard.pending_spend == Decimal("0.6")


def test_middleware_closes_the_spider_once_tripped() -> None:
    crawler = make_crawler()
    ext = started_guard(crawler)
    ext.guard.trip(LowBalanceError("The balance is low.", balance=Decimal(0), minimum=Decimal("0.001")))
    mw = CostGuardMiddleware.from_crawler(crawler)
    for _ in range(3):
        with pytest.raises(IgnoreRequest):
            mw.process_request(Request("http://127.0.0.1/solve", meta={"vastcap_cost": "0.002"}))
    assert crawler.stats.get_value("vastcap/requests_blocked") == 3
    assert ext._bridge.later == [("_do_close", "vastcap_low_balance")]  # type: ignore[union-attr]


def test_scheduled_requests_are_dropped_once_tripped() -> None:
    crawler = make_crawler()
    ext = started_guard(crawler)
    ext.request_scheduled(Request("http://127.0.0.1/"))  # not tripped: nothing happens
    ext.guard.trip(LowBalanceError("low", balance=Decimal(0), minimum=Decimal("0.001")))
    with pytest.raises(IgnoreRequest):
        ext.request_scheduled(Request("http://127.0.0.1/"))


# -- items that cannot be paid for ------------------------------------------------------------------
def test_guard_drop_item_is_a_drop_item_that_carries_the_error() -> None:
    from scrapy.exceptions import DropItem

    error = LowBalanceError("The balance is low.", balance=Decimal(0), minimum=Decimal("0.001"))
    drop = GuardDropItem(error)
    assert isinstance(drop, DropItem)
    assert drop.error is error and drop.reason == "vastcap_low_balance"
    assert drop.log_level == "WARNING"  # (an instance attribute: DropItem sets it in __init__)
    assert "[vastcap_low_balance]" in str(drop) and "item not processed" in str(drop)
    assert GuardDropItem(error, log_level="DEBUG").log_level == "DEBUG"


def test_the_first_dropped_item_is_a_warning_the_others_debug() -> None:
    ext = started_guard(make_crawler())
    error = LowBalanceError("The balance is low.", balance=Decimal(0), minimum=Decimal("0.001"))
    assert [ext.drop_item(error).log_level for _ in range(3)] == ["WARNING", "DEBUG", "DEBUG"]
