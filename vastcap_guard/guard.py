"""The guard's decision logic: readings in, verdicts out. No I/O, no framework.

A :class:`Guard` holds one guarded job's state (its starting balance, what it spent, how many
checks failed in a row, whether it is paused). Every adapter feeds it :class:`Reading` objects
(through :class:`vastcap_guard.run.GuardedRun`) and acts on the :class:`Verdict` it returns: carry
on, warn once, pause, resume, or stop with a :class:`GuardError`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from .config import GuardConfig
from .errors import (
    AccountError,
    ApiUnavailableError,
    BudgetExceededError,
    GuardError,
    InvalidKeyError,
    LowBalanceError,
)
from .forecast import BurnRate, Forecast

__all__ = ["Action", "Guard", "Reading", "Verdict", "format_usd", "no_key_error"]

#: a reservation no reading showed within this long was never spent (a dropped or failed request)
RESERVATION_HOLD = 300.0


def format_usd(amount: Decimal) -> str:
    """``$10.25``, ``$0.0009``: enough digits to see why a check failed, no float noise."""
    q = amount.normalize()
    if q.adjusted() > 12:
        return f"${q:.3e}"
    if q == q.to_integral():
        return f"${q.quantize(Decimal('0.01'))}"
    exponent = q.as_tuple().exponent
    digits = min(max(2, -exponent), 8) if isinstance(exponent, int) else 2
    if q != 0 and abs(q) < Decimal("0.00000001"):
        return f"${q:.2e}"  # no 1 MB line for an absurd answer such as 1e-999999
    return f"${q:.{digits}f}"


def no_key_error() -> InvalidKeyError:
    return InvalidKeyError(
        "No VastCap API key is configured: set the VASTCAP_API_KEY environment variable (or the "
        "Scrapy setting VASTCAP_API_KEY, the guard's api_key=, the CLI's --key-file). "
        "The job was not started."
    )


@dataclass(frozen=True)
class Reading:
    """One getBalance result: a balance, or the error that prevented reading it."""

    balance: Decimal | None
    error: GuardError | None = None
    #: wall-clock time of the reading (``time.time()``), for people and for other processes
    at: float = field(default_factory=time.time)
    #: ``time.monotonic()`` of the reading: ages, intervals and the forecast use this clock
    monotonic: float = field(default_factory=time.monotonic)
    #: increasing number per poller, so a reading seen twice is counted once
    seq: int = 0
    #: fleet mode: another member of the fleet stopped with ``error``; this job stops too
    remote_stop: bool = False
    #: fleet mode: what the whole fleet spent since its first member started (replaces local spend)
    fleet_spent: Decimal | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.balance is not None

    @property
    def age(self) -> float:
        return time.monotonic() - self.monotonic


class Action(enum.Enum):
    OK = "ok"
    #: the balance fell below the warning threshold (reported once per crossing)
    WARN = "warn"
    #: the check failed but the failure policy tolerates it; ``verdict.error`` says why
    FAILED = "failed"
    STOP = "stop"
    #: pause mode: the balance fell below the minimum; the job waits for a top-up
    PAUSE = "pause"
    #: pause mode: still paused (the balance is still below the minimum)
    HOLD = "hold"
    #: pause mode: a top-up; the job carries on
    RESUME = "resume"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reading: Reading | None
    #: the stop reason (STOP), the tolerated failure (FAILED), or why the job pauses (PAUSE, HOLD)
    error: GuardError | None = None
    #: the burn-rate projection after this reading
    forecast: Forecast | None = None
    #: the projection just fell below ``warn_minutes`` (reported once per crossing)
    forecast_low: bool = False

    @property
    def stop(self) -> bool:
        return self.action is Action.STOP

    @property
    def paused(self) -> bool:
        """The job is (still) paused after this verdict."""
        return self.action in (Action.PAUSE, Action.HOLD)

    @property
    def reason(self) -> str | None:
        return self.error.reason if self.action is Action.STOP and self.error else None


class Guard:
    """One guarded job's state and decisions. Thread-safe.

    Failure policy: a check that still fails after the client's retries is a *failed check*.
    The first check (pre-flight) stops at once on failure unless ``require_preflight`` is off,
    because nothing was ever confirmed; later, ``max_failures`` consecutive failed checks stop
    with the last failure's error (``0`` never stops on failures). An answer about the account
    (:class:`~vastcap_guard.AccountError`) stops at once, except that in pause mode
    (``on_low_balance="pause"``) a low balance pauses the job until a reading shows a top-up, or
    until ``pause_timeout`` has passed.
    """

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self.balance: Decimal | None = None
        self.balance_start: Decimal | None = None
        #: money spent since the first reading (sum of decreases; a top-up is not negative spend)
        self.spent = Decimal(0)
        self.checks = 0
        self.check_failures = 0
        self.consecutive_failures = 0
        self.last_reading: Reading | None = None
        self.tripped: GuardError | None = None
        #: pause mode: ``time.monotonic()`` when the current pause began (``None``: not paused)
        self.paused_since: float | None = None
        #: pause mode: how many pauses, and the seconds spent in the finished ones
        self.pauses = 0
        self.paused_seconds = 0.0
        #: how long the last finished pause lasted (seconds)
        self.last_pause_seconds = 0.0
        #: pause mode: the spend that paused the job (0: a reading below the minimum paused it)
        self._pause_cost = Decimal(0)
        #: spend reserved by cost-aware callers that no reading has shown yet: (monotonic, USD)
        self._reservations: list[tuple[float, Decimal]] = []
        self._last_seq = -1
        self._warned = False
        self._forecast_warned = False
        self.burn_rate = BurnRate(config.min_balance)
        self._trip_listeners: list[Callable[[GuardError], None]] = []

    def add_trip_listener(self, listener: Callable[[GuardError], None]) -> None:
        """Call ``listener(error)`` once when this guard trips by its own decision (fleet mode
        publishes it); a stop learnt from elsewhere (``Reading.remote_stop``) is not re-announced."""
        self._trip_listeners.append(listener)

    @property
    def forecast(self) -> Forecast:
        """Spend per minute and minutes left, from this job's readings (``state='unknown'`` at first)."""
        return self.burn_rate.forecast

    @property
    def pausing(self) -> bool:
        """Pause mode: a low balance pauses the job instead of stopping it."""
        return self.config.on_low_balance == "pause"

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def paused_for(self) -> float:
        """Seconds the current pause has lasted (0 when not paused)."""
        since = self.paused_since
        return 0.0 if since is None else time.monotonic() - since

    # -- state ---------------------------------------------------------------------------------
    def trip(self, error: GuardError, *, announce: bool = True) -> GuardError:
        """Record a stop (also one decided elsewhere: a cost check, a fleet member). The first wins."""
        with self._lock:
            if self.tripped is not None:
                return self.tripped
            self.tripped = error
            self._end_pause()
        if announce:
            for listener in list(self._trip_listeners):
                try:
                    listener(error)
                except Exception:
                    logging.getLogger("vastcap_guard").debug("trip listener failed", exc_info=True)
        return error

    # -- decisions -----------------------------------------------------------------------------
    def preflight_error(self) -> GuardError | None:
        """A stop that needs no reading (no key configured, or already tripped)."""
        if self.tripped is not None:
            return self.tripped
        if not self.config.api_key:
            return self.trip(no_key_error())
        return None

    def observe(self, reading: Reading) -> Verdict | None:
        """Take one reading into account. Returns ``None`` for a reading already seen."""
        with self._lock:
            if reading.seq and reading.seq <= self._last_seq:
                return None
            self._last_seq = max(self._last_seq, reading.seq)
            if self.tripped is not None:
                return Verdict(Action.STOP, reading, self.tripped)
            if reading.remote_stop and reading.error is not None:
                if self.pausing and isinstance(reading.error, LowBalanceError):
                    # a fleet member ran dry: pause with the fleet; its readings will resume us
                    return self._pause(reading, self._as_configured(reading.error))
                return Verdict(Action.STOP, reading, self.trip(reading.error, announce=False))
            first = self.checks == 0
            self.checks += 1
            self.last_reading = reading
            if reading.error is not None or reading.balance is None:
                return self._failed(reading, first)
            self.consecutive_failures = 0
            balance = reading.balance
            if self.balance_start is None:
                self.balance_start = balance
            elif self.balance is not None and balance < self.balance:
                self.spent += self.balance - balance
                self._settle(self.balance - balance)
            if reading.fleet_spent is not None:
                # the fleet's spend since its first member started includes this job's
                self.spent = max(self.spent, reading.fleet_spent)
            self.balance = balance
            self._expire_reservations()
            forecast = self.burn_rate.add(balance, reading.monotonic)
            cfg = self.config
            if balance < cfg.min_balance:
                return self._low(reading, self.low_balance_error(balance), forecast)
            if cfg.max_spend is not None and self.spent >= cfg.max_spend:
                return self._stop(
                    reading,
                    BudgetExceededError(
                        f"This job spent {format_usd(self.spent)} of VastCap balance, reaching its "
                        f"cap of {format_usd(cfg.max_spend)} (balance now {format_usd(balance)}). "
                        "Raise the spend cap to let it go on.",
                        spent=self.spent,
                        max_spend=cfg.max_spend,
                    ),
                )
            forecast_low = self._forecast_crossed(forecast)
            action = Action.OK
            if self.paused:
                short = self._unaffordable_pause_cost(balance)
                if short is not None:
                    # a spend paused the job: it resumes once the balance can pay for that spend
                    return self._pause(reading, self.low_balance_error(short, projected=True), forecast)
                self._end_pause()
                action = Action.RESUME
            if cfg.warn_balance is not None:
                if balance < cfg.warn_balance:
                    if not self._warned:
                        self._warned = True
                        if action is Action.OK:
                            action = Action.WARN
                else:
                    self._warned = False  # topped up: warn again on the next fall
            return Verdict(action, reading, forecast=forecast, forecast_low=forecast_low)

    def account(self, reading: Reading) -> None:
        """Take a reading into the counters only (balance, spent), without a decision: the
        closing reading of a job that has already stopped or ended."""
        with self._lock:
            if reading.balance is None or not reading.ok:
                return
            if self.balance is not None and reading.balance < self.balance:
                self.spent += self.balance - reading.balance
                self._settle(self.balance - reading.balance)
            if reading.fleet_spent is not None:
                self.spent = max(self.spent, reading.fleet_spent)
            if self.balance_start is None:
                self.balance_start = reading.balance
            self.balance = reading.balance

    def after_fork(self) -> None:
        """In a forked child: locks another thread of the parent may have held are replaced."""
        self._lock = threading.RLock()
        self.burn_rate.after_fork()

    def _forecast_crossed(self, forecast: Forecast) -> bool:
        limit = self.config.warn_minutes
        if limit is None or forecast.minutes_left is None:
            if forecast.state == "no_spend":
                self._forecast_warned = False
            return False
        if forecast.minutes_left < Decimal(str(limit)):
            if not self._forecast_warned:
                self._forecast_warned = True
                return True
            return False
        self._forecast_warned = False
        return False

    # -- pause mode ----------------------------------------------------------------------------
    def _low(self, reading: Reading, error: LowBalanceError, forecast: Forecast | None = None) -> Verdict:
        if self.pausing:
            return self._pause(reading, error, forecast)
        return self._stop(reading, error)

    def _pause(self, reading: Reading | None, error: LowBalanceError, forecast: Forecast | None = None) -> Verdict:
        if self.paused_since is None:
            self.paused_since = time.monotonic()
            self.pauses += 1
            return Verdict(Action.PAUSE, reading, error, forecast=forecast)
        timed_out = self.pause_timeout_error()
        if timed_out is not None:
            return self._stop(reading, timed_out)
        return Verdict(Action.HOLD, reading, error, forecast=forecast)

    def pause_for_spend(self, error: LowBalanceError, cost: Decimal) -> Verdict | None:
        """Pause mode: a spend of ``cost`` that the balance cannot pay (:meth:`reserve` refused it
        with ``error``) pauses the job as a reading below the minimum would, and the job resumes
        at the first reading that shows the balance can pay for that spend. Returns the PAUSE
        verdict when a pause begins; ``None`` when already paused, stopped, or not in pause mode."""
        with self._lock:
            if not self.pausing or self.tripped is not None or self.paused_since is not None:
                return None
            self._pause_cost = cost
            return self._pause(None, error)

    @property
    def resume_balance(self) -> Decimal:
        """Pause mode: the balance a reading must show for the job to resume (the minimum, plus
        the spend that paused it and the spend reserved before, if a spend paused it)."""
        with self._lock:
            if not self._pause_cost:
                return self.config.min_balance
            return self.config.min_balance + self.pending_spend + self._pause_cost

    def _unaffordable_pause_cost(self, balance: Decimal) -> Decimal | None:
        """The projected balance if the spend that paused the job still cannot be paid, else None."""
        if not self._pause_cost:
            return None
        projected = balance - self.pending_spend - self._pause_cost
        return projected if projected < self.config.min_balance else None

    def _end_pause(self) -> None:
        self._pause_cost = Decimal(0)
        since, self.paused_since = self.paused_since, None
        if since is not None:
            self.last_pause_seconds = time.monotonic() - since
            self.paused_seconds += self.last_pause_seconds

    def pause_timeout_error(self) -> LowBalanceError | None:
        """The error that ends a pause which lasted longer than ``pause_timeout`` (else ``None``)."""
        with self._lock:
            if self.paused_since is None or self.paused_for() < self.config.pause_timeout:
                return None
            balance = self.balance if self.balance is not None else Decimal(0)
            if self._pause_cost:  # a spend paused it: the balance may be above the minimum
                below = (f"below the {format_usd(self.resume_balance)} needed to pay for the waiting spend "
                         f"and keep the minimum of {format_usd(self.config.min_balance)}")
            else:
                below = f"below the minimum of {format_usd(self.config.min_balance)}"
            return LowBalanceError(
                f"The VastCap balance stayed {below} for {self.config.pause_timeout:g} s of pause "
                f"(balance {format_usd(balance)}); no top-up came in time. Top up the account from the "
                "VastCap dashboard and run the job again.",
                balance=balance,
                minimum=self.config.min_balance,
            )

    def expire_pause(self) -> GuardError | None:
        """Stop a pause that outlived ``pause_timeout`` (a timer's check between readings)."""
        error = self.pause_timeout_error()
        return self.trip(error) if error is not None else None

    # -- failures ------------------------------------------------------------------------------
    def _as_configured(self, error: LowBalanceError) -> LowBalanceError:
        if error.minimum != self.config.min_balance:
            # the API (or the fleet) said "insufficient balance": report it against our minimum
            return LowBalanceError(error.message, balance=error.balance, minimum=self.config.min_balance)
        return error

    def _failed(self, reading: Reading, first: bool) -> Verdict:
        error = reading.error or ApiUnavailableError("getBalance gave no balance.")
        self.check_failures += 1
        self.consecutive_failures += 1
        if isinstance(error, LowBalanceError):
            return self._low(reading, self._as_configured(error))
        if isinstance(error, AccountError):
            # the API spoke about the account itself: that is an answer, not a failure to get one
            return self._stop(reading, error)
        if first and self.config.require_preflight:
            # nothing was ever confirmed: max_failures governs checks while running, not this one
            return self._stop(reading, error)
        limit = self.config.max_failures
        if limit and self.consecutive_failures >= limit:
            return self._stop(reading, error)
        if self.paused:
            timed_out = self.pause_timeout_error()
            if timed_out is not None:
                return self._stop(reading, timed_out)
        return Verdict(Action.FAILED, reading, error)

    def _stop(self, reading: Reading | None, error: GuardError) -> Verdict:
        return Verdict(Action.STOP, reading, self.trip(error))

    def low_balance_error(self, balance: Decimal, *, projected: bool = False) -> LowBalanceError:
        minimum = self.config.min_balance
        what = "would fall to" if projected else "is"
        return LowBalanceError(
            f"The VastCap balance {what} {format_usd(balance)}, below the minimum of "
            f"{format_usd(minimum)} needed to solve captchas. Top up the account from the "
            "VastCap dashboard.",
            balance=balance,
            minimum=minimum,
        )

    # -- spending ------------------------------------------------------------------------------
    @property
    def pending_spend(self) -> Decimal:
        """Spend reserved with :meth:`reserve` that the balance readings do not show yet."""
        with self._lock:
            return sum((amount for _, amount in self._reservations), Decimal(0))

    def _settle(self, decrease: Decimal) -> None:
        """A reading shows ``decrease`` spent: it pays for the oldest reservations first."""
        left = decrease
        while self._reservations and left > 0:
            at, amount = self._reservations[0]
            if amount <= left:
                left -= amount
                self._reservations.pop(0)
            else:
                self._reservations[0] = (at, amount - left)
                left = Decimal(0)

    def _expire_reservations(self) -> None:
        """A reservation no reading showed for :data:`RESERVATION_HOLD` seconds (or five intervals,
        if longer) was never spent. Until then it counts: a debit can come long after the request
        that reserved it (a solve is charged when it is ready)."""
        horizon = time.monotonic() - max(5 * self.config.interval, RESERVATION_HOLD)
        self._reservations = [(at, amount) for at, amount in self._reservations if at >= horizon]

    def release(self, cost: Decimal) -> None:
        """A reserved spend will not happen (its request was dropped or failed): forget it."""
        with self._lock:
            for i in range(len(self._reservations) - 1, -1, -1):
                if self._reservations[i][1] == cost:
                    del self._reservations[i]
                    return

    def reserve(self, cost: Decimal) -> Decimal:
        """Account for ``cost`` (USD) about to be spent; return the projected balance.

        Raises the trip error once the guard has stopped, :class:`LowBalanceError` when the last
        reading minus the estimated spend since it (including ``cost``) would fall below the
        minimum (also while paused), and :class:`BudgetExceededError` when it would pass the spend
        cap. A refusal records nothing and does not trip the guard: the adapter decides.
        """
        with self._lock:
            if self.tripped is not None:
                raise self.tripped
            if self.balance is None:
                raise ApiUnavailableError(
                    "No VastCap balance has been read yet, so this spend cannot be checked."
                )
            pending = self.pending_spend
            projected = self.balance - pending - cost
            if projected < self.config.min_balance:
                raise self.low_balance_error(projected, projected=True)
            if self.paused:  # the balance may cover this spend, but not the one the pause waits for
                raise LowBalanceError(
                    f"No spend while the job waits for a top-up: it resumes when the VastCap balance "
                    f"reaches {format_usd(self.resume_balance)} (last read {format_usd(self.balance)}). "
                    "Top up the account from the VastCap dashboard.",
                    balance=self.balance,
                    minimum=self.config.min_balance,
                )
            cap = self.config.max_spend
            if cap is not None and self.spent + pending + cost > cap:
                spent = self.spent + pending + cost
                raise BudgetExceededError(
                    f"This spend would bring the job to {format_usd(spent)}, past its cap of "
                    f"{format_usd(cap)}. Raise the spend cap to let it go on.",
                    spent=spent,
                    max_spend=cap,
                )
            self._reservations.append((time.monotonic(), cost))
            return projected

    def snapshot(self) -> dict[str, object]:
        """Counters for stats and dashboards: money as Decimal, rates rounded for people
        (spend to $0.0001 per minute, time left to 0.1 minute)."""
        with self._lock:
            forecast = self.forecast
            return {
                "balance": self.balance,
                "balance_start": self.balance_start,
                "spent": self.spent,
                "checks": self.checks,
                "check_failures": self.check_failures,
                "tripped": self.tripped.reason if self.tripped else None,
                "paused": self.paused,
                "spend_per_minute": _round(forecast.spend_per_minute, _RATE_QUANTUM),
                "minutes_left": _round(forecast.minutes_left, _MINUTES_QUANTUM),
            }


_RATE_QUANTUM = Decimal("0.0001")
_MINUTES_QUANTUM = Decimal("0.1")


def _round(value: Decimal | None, quantum: Decimal) -> Decimal | None:
    if value is None:
        return None
    if value.adjusted() > 12:  # absurd (a rate of ~0): keep it short, not 28 digits
        return value.quantize(Decimal(1), rounding=ROUND_HALF_UP) if value.is_finite() else value
    rounded = value.quantize(quantum, rounding=ROUND_HALF_UP)
    return rounded + 0  # -0.0 -> 0.0
