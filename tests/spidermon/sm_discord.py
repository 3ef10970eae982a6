"""The docs' Discord example, imported by the crawl subprocess (needs jinja2, as Spidermon's actions do)."""

from __future__ import annotations

from typing import ClassVar

from spidermon.contrib.actions.discord.notifiers import SendDiscordMessageSpiderFinished

from vastcap_guard.spidermon import VastcapMonitorSuite


class VastcapAlerts(VastcapMonitorSuite):  # type: ignore[misc]
    monitors_failed_actions: ClassVar[list[type]] = [SendDiscordMessageSpiderFinished]
