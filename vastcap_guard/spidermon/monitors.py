"""Spidermon monitors and suites for vastcap-guard (the decisions live in :mod:`.checks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar, cast

from spidermon import MonitorSuite, monitors
from spidermon.contrib.scrapy.monitors.base import BaseScrapyMonitor

from ._context import guard_details, setting_getter, stats_of
from .checks import Outcome, balance_outcome, minutes_left_outcome, stop_outcome

__all__ = [
    "MESSAGE_TEMPLATE",
    "VastcapBalanceMonitor",
    "VastcapMinutesLeftMonitor",
    "VastcapMonitorSuite",
    "VastcapPeriodicMonitorSuite",
    "VastcapStopMonitor",
]

#: A Jinja text template for Spidermon's notification actions: the stock templates list only the
#: names of the monitors that failed; this one adds each failure's message (what happened, what to
#: do). Use it as ``SPIDERMON_SLACK_MESSAGE``, ``SPIDERMON_TELEGRAM_MESSAGE``,
#: ``SPIDERMON_DISCORD_MESSAGE`` or ``SPIDERMON_BODY_TEXT`` (e-mail). The list is a code block, so
#: underscores in reasons and setting names survive Telegram's and Slack's Markdown.
MESSAGE_TEMPLATE = (
    "`{{ data.sc_spider_name }}`: "
    "{% if monitors_failed %}{{ result.monitors_failed_results|length }} monitor(s) failed"
    "{% else %}all monitors passed{% endif %}"
    "{% if monitors_failed %}\n```\n"
    "{% for r in result.monitors_failed_results %}{{ r.monitor.name }}: {{ r.reason or r.status }}\n"
    "{% endfor %}```{% endif %}"
)

# unittest leaves the frames of modules with this global out of a failure's report: Spidermon then
# logs "AssertionError: <our message>" rather than a traceback ending in the monitor. Only thin test
# methods live here; a bug in ._context or .checks still shows its traceback from there on.
__unittest = True


_T = TypeVar("_T")


def _named(name: str) -> Callable[[_T], _T]:
    """Spidermon's ``monitors.name`` decorator, typed (it returns what it decorates)."""
    return cast(Callable[[_T], _T], monitors.name(name))


class _VastcapMonitor(BaseScrapyMonitor):  # type: ignore[misc]
    """Reads stats and settings defensively (:mod:`._context`): empty stats or no crawler never raise."""

    longMessage = False

    def _report(self, outcome: Outcome) -> None:
        if outcome.status == "skip":
            self.skipTest(outcome.message)
        elif outcome.failed:
            # "from None": the suite may run while Scrapy handles an exception (a CloseSpider at
            # pre-flight, in Twisted reactor mode); the report must not show that one as context
            raise self.failureException(outcome.message) from None


@_named("VastCap stop")
class VastcapStopMonitor(_VastcapMonitor):
    """Fails when vastcap-guard stopped the crawl (a ``vastcap_*`` finish reason)."""

    @_named("The crawl was not stopped by vastcap-guard")
    def test_not_stopped_by_vastcap_guard(self) -> None:
        masked_key, details = guard_details(self.data)
        self._report(stop_outcome(stats_of(self.data), details=details, masked_key=masked_key))


@_named("VastCap balance")
class VastcapBalanceMonitor(_VastcapMonitor):
    """Fails when the VastCap balance (stat ``vastcap/balance``) is below ``VASTCAP_WARN_BALANCE``."""

    @_named("The balance is at least VASTCAP_WARN_BALANCE")
    def test_balance_above_warn_balance(self) -> None:
        masked_key, _ = guard_details(self.data)
        self._report(balance_outcome(stats_of(self.data), setting_getter(self.data), masked_key=masked_key))


@_named("VastCap time left")
class VastcapMinutesLeftMonitor(_VastcapMonitor):
    """Fails when the forecast (stat ``vastcap/minutes_left``) is below ``VASTCAP_WARN_MINUTES``."""

    @_named("The money lasts at least VASTCAP_WARN_MINUTES")
    def test_minutes_left_above_warn_minutes(self) -> None:
        masked_key, _ = guard_details(self.data)
        self._report(
            minutes_left_outcome(stats_of(self.data), setting_getter(self.data), masked_key=masked_key)
        )


class VastcapMonitorSuite(MonitorSuite):  # type: ignore[misc]
    """For ``SPIDERMON_SPIDER_CLOSE_MONITORS``: did vastcap-guard stop the crawl, is the balance low?"""

    monitors: ClassVar[list[type]] = [VastcapStopMonitor, VastcapBalanceMonitor]


class VastcapPeriodicMonitorSuite(MonitorSuite):  # type: ignore[misc]
    """For ``SPIDERMON_PERIODIC_MONITORS``: does the money last at least ``VASTCAP_WARN_MINUTES``?"""

    monitors: ClassVar[list[type]] = [VastcapMinutesLeftMonitor]
