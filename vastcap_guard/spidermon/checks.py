"""What the Spidermon monitors decide, as plain functions of a crawl's stats and settings.

No framework is imported here: the monitors in :mod:`vastcap_guard.spidermon.monitors` call these
functions and turn the :class:`Outcome` into a Spidermon pass, skip or failure. Messages say what
happened and what to do; the API key only ever appears masked (``vc_…9f3a``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..config import DEFAULT_MIN_BALANCE, _to_seconds, to_decimal
from ..errors import ConfigError
from ..guard import format_usd

__all__ = [
    "HINTS",
    "STAT_BALANCE",
    "STAT_MINUTES_LEFT",
    "Outcome",
    "balance_outcome",
    "minutes_left_outcome",
    "stop_outcome",
]

STAT_BALANCE = "vastcap/balance"
STAT_BALANCE_START = "vastcap/balance_start"
STAT_SPENT = "vastcap/spent"
STAT_SPEND_PER_MINUTE = "vastcap/spend_per_minute"
STAT_MINUTES_LEFT = "vastcap/minutes_left"

#: the prefix of every close reason vastcap-guard uses
REASON_PREFIX = "vastcap_"

#: what to do, per close reason (messages avoid "#", "&" and "+": Spidermon's Telegram client puts
#: the text in a URL unescaped)
HINTS: dict[str, str] = {
    "vastcap_low_balance": "Top up the VastCap account, then run the crawl again.",
    "vastcap_budget_exceeded": (
        "The crawl spent VASTCAP_MAX_SPEND: find out what spent the money; if the spend was expected, "
        "raise VASTCAP_MAX_SPEND, then run the crawl again."
    ),
    "vastcap_invalid_key": (
        "VastCap does not know the API key, or none was set: check VASTCAP_API_KEY (the setting or "
        "the environment variable), then run the crawl again."
    ),
    "vastcap_account_disabled": (
        "The VastCap account is disabled: contact VastCap support or use the key of an active "
        "account, then run the crawl again."
    ),
    "vastcap_api_unavailable": (
        "The VastCap API could not be reached or answered garbage: check the network and "
        "VASTCAP_API_URL, then run the crawl again. To ride out outages, raise VASTCAP_MAX_FAILURES "
        "or set VASTCAP_REQUIRE_PREFLIGHT = False."
    ),
    "vastcap_api_error": (
        "The VastCap API answered with an error vastcap-guard does not know: check VASTCAP_API_URL "
        "and VASTCAP_API_KEY, then run the crawl again."
    ),
    "vastcap_config_error": (
        "A VASTCAP_* setting has a value vastcap-guard cannot use (the ERROR line of the crawl log "
        "names it): fix it, then run the crawl again."
    ),
}
#: spend rates are shown to a hundredth of a cent per minute, as in the guard's own log line
_RATE_QUANTUM = Decimal("0.0001")
_GENERIC_HINT = "See the vastcap-guard ERROR line in the crawl log for what to do."

#: a Scrapy ``Settings`` (or any mapping): only ``.get(name)`` is used
SettingGetter = Callable[[str], object]


@dataclass(frozen=True)
class Outcome:
    """A monitor's decision: ``status`` is ``"pass"``, ``"skip"`` or ``"fail"``, with a message."""

    status: str
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


PASS = Outcome("pass")


def _number(stats: Mapping[str, object], name: str) -> Decimal | None:
    """A numeric stat as a Decimal (``None`` when absent or not a finite number)."""
    value = stats.get(name)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return Decimal(repr(value))  # repr: the shortest form that round-trips (0.9, not 0.9000...)
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _key(masked_key: str | None) -> str:
    return f" (API key {masked_key})" if masked_key else ""


def _min_balance(get: SettingGetter) -> Decimal:
    try:
        value = to_decimal(get("VASTCAP_MIN_BALANCE"), "VASTCAP_MIN_BALANCE", allow_none=True)
    except ConfigError:
        value = None
    return DEFAULT_MIN_BALANCE if value is None else value


def stop_outcome(
    stats: Mapping[str, object], *, details: str | None = None, masked_key: str | None = None
) -> Outcome:
    """Fail when the crawl's ``finish_reason`` is one of vastcap-guard's (``vastcap_*``).

    ``details`` is the guard's own message for the stop, when the crawler is at hand.
    """
    reason = stats.get("finish_reason")
    if not isinstance(reason, str) or not reason.startswith(REASON_PREFIX):
        return PASS
    parts = [f"vastcap-guard stopped the crawl: {reason}. {HINTS.get(reason, _GENERIC_HINT)}"]
    balance = _number(stats, STAT_BALANCE)
    if balance is not None:
        spent = _number(stats, STAT_SPENT)
        start = _number(stats, STAT_BALANCE_START)
        line = f"Balance at close: {format_usd(balance)}"
        if start is not None and spent:
            line += f" (at start {format_usd(start)}, spent {format_usd(spent)} during the crawl)"
        parts.append(line + ".")
    else:
        parts.append("No balance was read.")
    if details:
        parts.append(f"Details: {details}")
    return Outcome("fail", " ".join(parts) + _key(masked_key))


def balance_outcome(
    stats: Mapping[str, object], get: SettingGetter, *, masked_key: str | None = None
) -> Outcome:
    """Fail when the balance at close (``vastcap/balance``) is below ``VASTCAP_WARN_BALANCE``.

    Skipped when the setting is unset or no balance was read.
    """
    try:
        threshold = to_decimal(get("VASTCAP_WARN_BALANCE"), "VASTCAP_WARN_BALANCE", allow_none=True)
    except ConfigError as exc:
        return Outcome("fail", f"{exc.message} Fix the setting.")
    if threshold is None:
        return Outcome("skip", "VASTCAP_WARN_BALANCE is not set: there is no balance to compare with.")
    balance = _number(stats, STAT_BALANCE)
    if balance is None:
        return Outcome(
            "skip",
            "No VastCap balance was read in this crawl (vastcap-guard is off, or it stopped the crawl "
            "before it could read one).",
        )
    if balance >= threshold:
        return PASS
    return Outcome(
        "fail",
        f"The VastCap balance at close, {format_usd(balance)}, is below VASTCAP_WARN_BALANCE "
        f"{format_usd(threshold)}{_key(masked_key)}. Top up the VastCap account before the next crawl: "
        f"crawls stop below {format_usd(_min_balance(get))} (VASTCAP_MIN_BALANCE).",
    )


def minutes_left_outcome(
    stats: Mapping[str, object], get: SettingGetter, *, masked_key: str | None = None
) -> Outcome:
    """Fail when the forecast (``vastcap/minutes_left``) is below ``VASTCAP_WARN_MINUTES``.

    Skipped when the setting is unset or the forecast is unknown (too few readings, a top-up, the
    guard off); passes when nothing is being spent.
    """
    raw = get("VASTCAP_WARN_MINUTES")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return Outcome("skip", "VASTCAP_WARN_MINUTES is not set: there is no time left to compare with.")
    try:
        limit = _to_seconds(raw, "VASTCAP_WARN_MINUTES", maximum=1e9, unit="minutes")
    except ConfigError as exc:
        return Outcome("fail", f"{exc.message} Fix the setting.")
    minutes = _number(stats, STAT_MINUTES_LEFT)
    rate = _number(stats, STAT_SPEND_PER_MINUTE)
    if minutes is None:
        if rate is not None and rate == 0:
            return PASS  # a flat balance: nothing is being spent, the money lasts
        return Outcome(
            "skip",
            "No forecast yet: vastcap-guard needs a few balance readings that show spending before "
            "it can tell how long the money lasts (a top-up starts the estimate again).",
        )
    if minutes >= Decimal(str(limit)):
        return PASS
    spending = f"At the current spend of {format_usd(rate.quantize(_RATE_QUANTUM))}/min the" if rate else "The"
    balance = _number(stats, STAT_BALANCE)
    lasts = f"VastCap balance {format_usd(balance)}" if balance is not None else "VastCap balance"
    return Outcome(
        "fail",
        f"{spending} {lasts} lasts about {minutes:.1f} more minute(s), less than VASTCAP_WARN_MINUTES "
        f"{limit:g}{_key(masked_key)}. Top up the VastCap account soon: the crawl stops below "
        f"{format_usd(_min_balance(get))}.",
    )
