"""Signals sent by the Scrapy extension through the crawler's signal manager.

They are plain sentinel objects (as Scrapy's own ``scrapy.signals`` are), so importing this module
imports no framework. Connect with ``crawler.signals.connect(handler, signal=balance_low)``.

- ``balance_checked(reading, guard)``: after every check, successful or not.
- ``balance_low(balance, threshold, guard)``: once when the balance falls below
  ``VASTCAP_WARN_BALANCE`` (again after a top-up and a new fall).
- ``balance_forecast(forecast, guard)``: once when the burn-rate projection (a
  :class:`vastcap_guard.forecast.Forecast`) falls below ``VASTCAP_WARN_MINUTES`` minutes left
  (again after it recovered and fell again); the crawl goes on.
- ``guard_tripped(error, reason, guard)``: once, when the guard decides to stop the job.
- ``crawl_paused(error, at_start, guard)``: ``VASTCAP_ON_LOW_BALANCE = "pause"``: the crawl
  paused for a top-up (``error`` is the :class:`vastcap_guard.LowBalanceError` saying why;
  ``at_start``: it is held before its first request).
- ``crawl_resumed(balance, paused_seconds, guard)``: a check saw the top-up; the crawl goes on
  after waiting ``paused_seconds``.
"""

balance_checked = object()
balance_low = object()
balance_forecast = object()
guard_tripped = object()
crawl_paused = object()
crawl_resumed = object()

__all__ = [
    "balance_checked",
    "balance_forecast",
    "balance_low",
    "crawl_paused",
    "crawl_resumed",
    "guard_tripped",
]
