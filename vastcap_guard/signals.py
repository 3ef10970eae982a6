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
"""

balance_checked = object()
balance_low = object()
balance_forecast = object()
guard_tripped = object()

__all__ = ["balance_checked", "balance_forecast", "balance_low", "guard_tripped"]
