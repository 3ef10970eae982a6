"""What the guard tells people, worded with each adapter's own names for its settings.

Every log line a guarded job prints comes from here, so the Scrapy extension, the Playwright guard,
the CLI and any new adapter say the same thing in their users' vocabulary:
``VASTCAP_MAX_FAILURES = 0`` in Scrapy, ``max_failures=0`` in Python, ``--max-failures 0`` on
the CLI. No message contains the API key (only its masked form) or credentials of a URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

from .config import GuardConfig
from .errors import ApiError, ApiUnavailableError, ConfigError, GuardError, InvalidKeyError
from .forecast import Forecast
from .guard import Guard, format_usd

__all__ = ["CLI_NAMES", "PYTHON_NAMES", "Wording"]

#: spend rates are shown to a hundredth of a cent per minute, not to 28 digits
RATE_QUANTUM = Decimal("0.0001")

Style = Literal["setting", "argument", "option"]

#: the keyword arguments of ``vastcap_guard.playwright.guard()`` and the other Python adapters
PYTHON_NAMES: Mapping[str, str] = MappingProxyType({
    f: f for f in (
        "api_key", "api_url", "interval", "min_balance", "warn_balance", "max_spend", "max_failures",
        "timeout", "require_preflight", "warn_minutes", "shared_state", "on_low_balance", "pause_timeout",
    )
})

#: the options of the ``vastcap-guard`` command
CLI_NAMES: Mapping[str, str] = MappingProxyType({
    "api_key": "--key-file",
    "api_url": "--api-url",
    "interval": "--interval",
    "min_balance": "--min-balance",
    "warn_balance": "--warn-balance",
    "max_failures": "--max-failures",
    "timeout": "--timeout",
    "warn_minutes": "--warn-minutes",
    "shared_state": "--shared-state",
})


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Wording:
    """How one adapter names its job and its settings.

    ``style`` says how a value is written: ``"setting"`` (``VASTCAP_MAX_FAILURES = 0``),
    ``"argument"`` (``max_failures=0``) or ``"option"`` (``--max-failures 0``).
    """

    #: what the user calls the guarded job: "crawl", "Playwright script"...
    job: str
    #: GuardConfig field -> the name the user writes
    names: Mapping[str, str] = field(default_factory=lambda: PYTHON_NAMES)
    style: Style = "argument"

    # -- names ---------------------------------------------------------------------------------
    def name(self, field_name: str) -> str:
        return self.names.get(field_name, field_name)

    def assign(self, field_name: str, value: object) -> str:
        """``VASTCAP_MAX_FAILURES = 0``, ``max_failures=0`` or ``--max-failures 0``."""
        name = self.name(field_name)
        if self.style == "setting":
            return f"{name} = {value}"
        if self.style == "option":
            return f"{name} {value}"
        return f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"

    def describe(self, field_name: str) -> str:
        """Where a value was set: "the VASTCAP_API_KEY setting", "api_key=", "--key-file"."""
        name = self.name(field_name)
        if self.style == "setting":
            return f"the {name} setting"
        if self.style == "argument":
            return f"{name}="
        return name

    def key_source(self, config: GuardConfig) -> str:
        if config.key_source is None:
            return "nowhere"
        if config.key_source == "environment":
            return "the VASTCAP_API_KEY environment variable"
        return self.describe("api_key")

    # -- messages ------------------------------------------------------------------------------
    def started(self, config: GuardConfig, balance: Decimal) -> str:
        below = "pause below" if config.on_low_balance == "pause" else "stop below"
        return (
            f"vastcap-guard: VastCap balance {format_usd(balance)} (key {config.masked_key}, {below} "
            f"{format_usd(config.min_balance)}); checking every {config.interval:g}s."
        )

    def stopped(self, error: GuardError, config: GuardConfig, *, at_start: bool) -> str:
        when = f"did not start the {self.job}" if at_start else f"is stopping the {self.job}"
        key = ""
        if config.api_key:
            key = f" (API key {config.masked_key}"
            if isinstance(error, InvalidKeyError):
                key += f", from {self.key_source(config)}"
            key += ")"
        return f"vastcap-guard {when} [{error.reason}]: {error.message}{key}{self.hint(error)}"

    def stop_reason(self, error: GuardError) -> str:
        """The short reason handed to a framework's own stop call (Crawlee's ``crawler.stop()``
        logs it); the ERROR line of :meth:`stopped` says the rest. No final period: Crawlee adds one."""
        return f"vastcap-guard stopped the {self.job} [{error.reason}]"

    def held(self, reason: str, *, paused: bool) -> str:
        """Why a request was not sent but handed back to its queue (a framework's retry line quotes it)."""
        if paused:
            return (
                f"vastcap-guard paused the {self.job} [{reason}]: this request was not sent; it waits in the "
                "queue for a top-up"
            )
        return (
            f"vastcap-guard stopped the {self.job} [{reason}]: this request was not sent; it stays in the "
            "queue for a resume"
        )

    def hint(self, error: GuardError) -> str:
        if isinstance(error, ApiUnavailableError):
            return (
                f" To let {self.job}s run through API outages, raise {self.name('max_failures')} "
                f"(0 = never stop on failed checks) or set {self.assign('require_preflight', False)}."
            )
        if isinstance(error, ApiError):
            return f" Check {self.name('api_url')} and {self.name('api_key')}."
        if isinstance(error, ConfigError):
            return f" Fix the setting and run the {self.job} again."
        return ""

    def check_failed(self, error: GuardError, guard: Guard, *, preflight: bool) -> str:
        cfg = guard.config
        if cfg.max_failures:
            policy = f"{guard.consecutive_failures} in a row; the {self.job} stops after {cfg.max_failures}"
        else:
            policy = f"{self.assign('max_failures', 0)}: failed checks never stop the {self.job}"
        if preflight:
            policy += (
                f"; {self.assign('require_preflight', False)}: the {self.job} starts without a "
                "confirmed balance"
            )
        return f"vastcap-guard: balance check failed ({policy}): {error.message}"

    def below_warning(self, balance: Decimal, config: GuardConfig) -> str:
        warn = config.warn_balance if config.warn_balance is not None else Decimal(0)
        return (
            f"vastcap-guard: the VastCap balance {format_usd(balance)} is below the warning level of "
            f"{format_usd(warn)} ({self.name('warn_balance')}; key {config.masked_key}). Top up the "
            f"account soon: the {self.job} stops below {format_usd(config.min_balance)}."
        )

    def forecast_low(self, forecast: Forecast, balance: Decimal | None, config: GuardConfig) -> str:
        rate = forecast.spend_per_minute if forecast.spend_per_minute is not None else Decimal(0)
        left = forecast.minutes_left if forecast.minutes_left is not None else Decimal(0)
        shown = format_usd(balance) if balance is not None else "the balance"
        limit = config.warn_minutes if config.warn_minutes is not None else 0.0
        return (
            f"vastcap-guard: at the current spend of {format_usd(rate.quantize(RATE_QUANTUM))}/min the "
            f"VastCap balance {shown} lasts less than {limit:g} minutes ({self.name('warn_minutes')}): "
            f"about {left:.1f} more minute(s) (key {config.masked_key}). Top up the account soon: the "
            f"{self.job} stops below {format_usd(config.min_balance)}."
        )

    def paused(self, error: GuardError, config: GuardConfig, *, at_start: bool,
               resume_at: Decimal | None = None) -> str:
        """The pause line; ``resume_at`` is the balance a check must see to resume (default: the
        minimum; more when a spend the balance could not pay paused the job)."""
        what = f"is holding the {self.job} before it starts" if at_start else f"paused the {self.job}"
        needed = config.min_balance if resume_at is None else resume_at
        return (
            f"vastcap-guard {what} [{error.reason}]: {error.message} No new request is sent. Top up "
            f"the account: the {self.job} resumes at the first check that sees the balance at or above "
            f"{format_usd(needed)} (every {config.interval:g}s), and closes if no top-up "
            f"comes within {_duration(config.pause_timeout)} ({self.name('pause_timeout')})."
        )

    def resumed(self, balance: Decimal | None, waited: float) -> str:
        shown = format_usd(balance) if balance is not None else "back"
        return (
            f"vastcap-guard: the VastCap balance is {shown}; the {self.job} resumes after waiting "
            f"{_duration(waited)} for a top-up."
        )

    def timer_counts_pauses(self, setting: str, seconds: float, config: GuardConfig) -> str:
        """A framework timer (``setting``, ``seconds``) that keeps running while the job is paused."""
        return (
            f"vastcap-guard: {setting} = {seconds:g} keeps counting while the {self.job} is paused for "
            f"a top-up: a pause longer than {_duration(seconds)} ends the {self.job} with that setting's "
            f"reason, before {self.assign('pause_timeout', f'{config.pause_timeout:g}')} would."
        )

    def spend_refused(self, error: GuardError, what: str) -> str:
        """Short: ``what`` (an item...) was not processed because it would have spent."""
        return f"vastcap-guard: {what} not processed, the {self.job} cannot spend [{error.reason}]"

    def summary(self, guard: Guard) -> str:
        balance = format_usd(guard.balance) if guard.balance is not None else "unknown"
        text = (
            f"vastcap-guard: {guard.checks} balance check(s), {guard.check_failures} failed; balance "
            f"{balance}, spent {format_usd(guard.spent)} during the {self.job}."
        )
        if guard.pauses:
            text += f" Paused {guard.pauses} time(s), {_duration(guard.paused_seconds)} in all."
        return text
