"""How long the money lasts: a burn-rate estimate from a job's balance readings.

The estimate is a least-squares slope of balance over time across the readings since the last
top-up (within a window), so noise in single readings does not swing it. It is deliberately
cautious:

- fewer than ``min_readings`` readings, or readings spanning less than ``min_span`` seconds:
  *unknown* (no rate, no time left) - never a guess shown as fact;
- a balance that goes up (a top-up) restarts the estimate from that reading;
- a flat or rising balance over the window means *no spend*: a rate of zero and no time limit,
  not a division by zero;
- after spending stops, the estimate decays to *no spend* once the balance has stayed flat for
  three times the usual gap between its decreases (and at least ``min_span``), and at the latest
  when the last decrease leaves the window (``window`` readings, 30 by default).

Times are seconds on a monotonic clock (``Reading.monotonic``), so a jump of the wall clock
cannot corrupt the estimate.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

__all__ = ["BurnRate", "Forecast"]

_SIXTY = Decimal(60)
_ZERO = Decimal(0)

ForecastState = Literal["unknown", "no_spend", "spending"]


@dataclass(frozen=True)
class Forecast:
    """The current projection. ``spend_per_minute`` and ``minutes_left`` are ``None`` while unknown."""

    state: ForecastState
    #: USD spent per minute (``0`` when not spending; ``None`` while unknown)
    spend_per_minute: Decimal | None = None
    #: minutes until the balance reaches the minimum (``None`` while unknown or not spending)
    minutes_left: Decimal | None = None
    #: readings the estimate rests on
    readings: int = 0

    @property
    def known(self) -> bool:
        return self.state != "unknown"

    def __str__(self) -> str:
        if self.state == "unknown":
            return "forecast unknown"
        if self.state == "no_spend":
            return "no spend"
        assert self.spend_per_minute is not None and self.minutes_left is not None
        return f"${self.spend_per_minute:.4f}/min, {self.minutes_left:.1f} min left"


UNKNOWN = Forecast("unknown")


class BurnRate:
    """Feed it ``(balance, time)`` readings; read :attr:`forecast`. Thread-safe."""

    def __init__(
        self,
        minimum: Decimal = Decimal("0.001"),
        *,
        min_readings: int = 3,
        min_span: float = 1.0,
        window: int = 30,
    ) -> None:
        if min_readings < 2:
            raise ValueError("min_readings must be at least 2")
        self.minimum = minimum
        self.min_readings = min_readings
        self.min_span = Decimal(str(min_span))
        self._points: deque[tuple[Decimal, Decimal]] = deque(maxlen=max(window, min_readings))
        self._lock = threading.Lock()
        self._forecast = UNKNOWN

    @property
    def forecast(self) -> Forecast:
        return self._forecast

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._points.clear()
            self._forecast = UNKNOWN

    def add(self, balance: Decimal, at: float) -> Forecast:
        """Take one reading (``at`` in seconds, any monotonic clock); return the new forecast."""
        t = Decimal(str(at))
        with self._lock:
            if self._points:
                last_balance, last_t = self._points[-1]
                if t <= last_t:
                    return self._forecast  # out of order or duplicate: ignore
                if balance > last_balance:
                    self._points.clear()  # a top-up: the old slope says nothing about the new money
            self._points.append((balance, t))
            self._forecast = self._estimate(balance)
            return self._forecast

    def _stopped_spending(self) -> bool:
        """The balance has been flat for much longer than it usually goes between decreases."""
        pts = list(self._points)
        drops = [pts[i][1] for i in range(1, len(pts)) if pts[i][0] < pts[i - 1][0]]
        if not drops:
            return True
        last_t = pts[-1][1]
        flat_for = last_t - drops[-1]
        usual_gap = (drops[-1] - drops[0]) / (len(drops) - 1) if len(drops) > 1 else drops[0] - pts[0][1]
        return flat_for >= self.min_span and flat_for > 3 * usual_gap

    def _estimate(self, balance: Decimal) -> Forecast:
        pts = self._points
        n = len(pts)
        if n < self.min_readings or pts[-1][1] - pts[0][1] < self.min_span:
            return Forecast("unknown", readings=n)
        mean_t = sum((t for _, t in pts), _ZERO) / n
        mean_b = sum((b for b, _ in pts), _ZERO) / n
        sxx = sum(((t - mean_t) ** 2 for _, t in pts), _ZERO)
        sxy = sum(((t - mean_t) * (b - mean_b) for b, t in pts), _ZERO)
        if sxx == 0:
            return Forecast("unknown", readings=n)
        slope = sxy / sxx  # USD per second; negative while spending
        if slope >= 0 or self._stopped_spending():
            return Forecast("no_spend", spend_per_minute=_ZERO, readings=n)
        per_minute = -slope * _SIXTY
        headroom = balance - self.minimum
        minutes = max(headroom, _ZERO) / per_minute
        return Forecast("spending", spend_per_minute=per_minute, minutes_left=minutes, readings=n)
