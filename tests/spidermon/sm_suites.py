"""Suites and an action for the Spidermon crawl tests, imported by the crawl subprocess.

``RecordResult`` is a plain Spidermon action (no template, no network) that appends what a
notification action receives, Spidermon's own ``result``, as one JSON line to the file named by
the ``SM_TEST_RECORD_FILE`` setting.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from spidermon import MonitorSuite
from spidermon.contrib.scrapy.monitors.monitors import FinishReasonMonitor
from spidermon.core.actions import Action

from vastcap_guard.spidermon import VastcapMonitorSuite, VastcapPeriodicMonitorSuite


class RecordResult(Action):  # type: ignore[misc]
    def __init__(self, path: str | None = None, step: str = "?") -> None:
        super().__init__()
        self.path = path
        self.step = step

    @classmethod
    def from_crawler_kwargs(cls, crawler: Any) -> dict[str, Any]:
        return {"path": crawler.settings.get("SM_TEST_RECORD_FILE")}

    def run_action(self) -> None:
        assert self.path
        entry = {
            "action": type(self).__name__,
            "monitors": [{"name": r.monitor.name, "status": r.status, "reason": r.reason}
                         for r in self.result.monitor_results],
            "failed": [r.monitor.name for r in self.result.monitors_failed_results],
        }
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


class RecordOnFailure(RecordResult):
    pass


class RecordOnPass(RecordResult):
    pass


class RecordedVastcapSuite(VastcapMonitorSuite):  # type: ignore[misc]
    """The close suite with actions, the way the docs tell users to add notifications."""

    monitors_passed_actions: ClassVar[list[type]] = [RecordOnPass]
    monitors_failed_actions: ClassVar[list[type]] = [RecordOnFailure]


class RecordedPeriodicSuite(VastcapPeriodicMonitorSuite):  # type: ignore[misc]
    monitors_failed_actions: ClassVar[list[type]] = [RecordOnFailure]


class StockFinishReasonSuite(MonitorSuite):  # type: ignore[misc]
    """Spidermon's own FinishReasonMonitor, alone (SpiderCloseMonitorSuite needs many settings)."""

    monitors: ClassVar[list[type]] = [FinishReasonMonitor]
