"""Spidermon monitors for vastcap-guard (``pip install "vastcap-guard[scrapy,spidermon]"``).

::

    SPIDERMON_ENABLED = True
    EXTENSIONS = {"spidermon.contrib.scrapy.extensions.Spidermon": 500}
    SPIDERMON_SPIDER_CLOSE_MONITORS = ["vastcap_guard.spidermon.VastcapMonitorSuite"]
    SPIDERMON_PERIODIC_MONITORS = {"vastcap_guard.spidermon.VastcapPeriodicMonitorSuite": 60}
    VASTCAP_WARN_BALANCE = 1.0      # the close suite fails below this balance (unset: skipped)
    VASTCAP_WARN_MINUTES = 30       # the periodic suite fails below this forecast (unset: skipped)

See docs/operations.md (section Spidermon). Importing this module imports Spidermon and Scrapy;
``import vastcap_guard`` does not.
"""

from .checks import HINTS
from .monitors import (
    MESSAGE_TEMPLATE,
    VastcapBalanceMonitor,
    VastcapMinutesLeftMonitor,
    VastcapMonitorSuite,
    VastcapPeriodicMonitorSuite,
    VastcapStopMonitor,
)

__all__ = [
    "HINTS",
    "MESSAGE_TEMPLATE",
    "VastcapBalanceMonitor",
    "VastcapMinutesLeftMonitor",
    "VastcapMonitorSuite",
    "VastcapPeriodicMonitorSuite",
    "VastcapStopMonitor",
]
