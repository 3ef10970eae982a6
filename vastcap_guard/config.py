"""Validated guard settings, shared by every adapter."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from ._secrets import mask_key, safe_url
from .client import DEFAULT_API_URL, check_api_url
from .errors import ConfigError

__all__ = ["DEFAULT_MIN_BALANCE", "GuardConfig", "to_decimal"]

DEFAULT_MIN_BALANCE = Decimal("0.001")
#: no account holds more than this: a larger limit is a typo
MAX_AMOUNT = Decimal(10) ** 9


def to_decimal(value: object, setting: str, *, allow_none: bool = False) -> Decimal | None:
    """Money from a setting: exact, finite, not negative."""
    if value is None or (allow_none and isinstance(value, str) and not value.strip()):
        if allow_none:
            return None
        raise ConfigError(f"{setting} must be an amount in USD, got nothing.", setting=setting)
    if isinstance(value, bool):
        raise ConfigError(f"{setting} must be an amount in USD, got {value!r}.", setting=setting)
    try:
        # str() first so that floats such as 0.1 keep the value the user wrote
        amount = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{setting} must be an amount in USD, got {value!r}.", setting=setting) from None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        raise ConfigError(
            f"{setting} must be an amount in USD between 0 and {MAX_AMOUNT:,}, got {value!r}.", setting=setting
        )
    return amount


def _to_seconds(value: object, setting: str, *, allow_zero: bool = False, unit: str = "seconds") -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{setting} must be a number of {unit}, got {value!r}.", setting=setting)
    try:
        seconds = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{setting} must be a number of {unit}, got {value!r}.", setting=setting) from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(
            f"{setting} must be a positive number of {unit}, got {value!r}.", setting=setting
        )
    return seconds


def _to_count(value: object, setting: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{setting} must be a whole number >= 0, got {value!r}.", setting=setting)
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{setting} must be a whole number >= 0, got {value!r}.", setting=setting) from None
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise ConfigError(f"{setting} must be a whole number >= 0, got {value!r}.", setting=setting)
    return int(number)


def _to_bool(value: object, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    raise ConfigError(f"{setting} must be true or false, got {value!r}.", setting=setting)


def _to_state_url(value: object, setting: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or urlsplit(value.strip()).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(
            f"{setting} must be a Redis URL such as redis://127.0.0.1:6379/0, got {_safe_state(value)!r}.",
            setting=setting,
        )
    return value.strip()


def _safe_state(value: object) -> object:
    return safe_url(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class GuardConfig:
    """What a guard watches and when it stops. Build it with :meth:`build` to validate input.

    ``api_key`` may be ``None``: a guard without a key stops at pre-flight with
    :class:`~vastcap_guard.InvalidKeyError` rather than failing open.
    """

    api_key: str | None = field(repr=False)
    api_url: str = DEFAULT_API_URL
    interval: float = 60.0
    min_balance: Decimal = DEFAULT_MIN_BALANCE
    warn_balance: Decimal | None = None
    max_spend: Decimal | None = None
    max_failures: int = 3
    timeout: float = 10.0
    #: stop when the pre-flight check fails (API unreachable): nothing was ever confirmed
    require_preflight: bool = True
    #: warn once when the burn-rate forecast says the money lasts fewer minutes than this
    warn_minutes: float | None = None
    #: fleet mode: a Redis URL (``redis://host:6379/0``) shared by every member of the fleet
    shared_state: str | None = None

    def __repr__(self) -> str:
        return (
            f"GuardConfig(api_key={mask_key(self.api_key)!r}, api_url={self.api_url!r}, "
            f"interval={self.interval!r}, min_balance={self.min_balance!r}, "
            f"warn_balance={self.warn_balance!r}, max_spend={self.max_spend!r}, "
            f"max_failures={self.max_failures!r}, timeout={self.timeout!r}, "
            f"require_preflight={self.require_preflight!r}, warn_minutes={self.warn_minutes!r}, "
            f"shared_state={_safe_state(self.shared_state)!r})"
        )

    @property
    def masked_key(self) -> str:
        return mask_key(self.api_key)

    @classmethod
    def build(
        cls,
        api_key: object = None,
        *,
        api_url: object = None,
        interval: object = 60.0,
        min_balance: object = DEFAULT_MIN_BALANCE,
        warn_balance: object = None,
        max_spend: object = None,
        max_failures: object = 3,
        timeout: object = 10.0,
        require_preflight: object = True,
        warn_minutes: object = None,
        shared_state: object = None,
        names: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> GuardConfig:
        """Validate and coerce user input (strings from settings files or the environment are fine).

        The key falls back to ``VASTCAP_API_KEY`` and the URL to ``VASTCAP_API_URL`` in
        ``environ`` (default ``os.environ``). ``names`` maps field names to the names the user
        knows (``{"interval": "VASTCAP_CHECK_INTERVAL"}``) so that a :class:`ConfigError` names
        the setting the user wrote.
        """
        env = os.environ if environ is None else environ
        n = dict(names or {})

        def name(f: str) -> str:
            return n.get(f, f)

        key: str | None
        if api_key is None or api_key == "":
            key = env.get("VASTCAP_API_KEY") if api_key is None else None
        elif isinstance(api_key, str):
            key = api_key
        else:
            raise ConfigError(f"{name('api_key')} must be a string.", setting=name("api_key"))
        key = key.strip() if key else None
        url = api_url if api_url not in (None, "") else env.get("VASTCAP_API_URL") or DEFAULT_API_URL
        minimum = to_decimal(min_balance, name("min_balance"))
        warn = to_decimal(warn_balance, name("warn_balance"), allow_none=True)
        cap = to_decimal(max_spend, name("max_spend"), allow_none=True)
        if cap is not None and cap == 0:
            raise ConfigError(f"{name('max_spend')} must be above 0 (or unset).", setting=name("max_spend"))
        assert minimum is not None
        return cls(
            api_key=key or None,
            api_url=check_api_url(url, name("api_url")),
            interval=_to_seconds(interval, name("interval")),
            min_balance=minimum,
            warn_balance=warn,
            max_spend=cap,
            max_failures=_to_count(max_failures, name("max_failures")),
            timeout=_to_seconds(timeout, name("timeout")),
            require_preflight=_to_bool(require_preflight, name("require_preflight")),
            warn_minutes=(
                None
                if warn_minutes is None or (isinstance(warn_minutes, str) and not warn_minutes.strip())
                else _to_seconds(warn_minutes, name("warn_minutes"), unit="minutes")
            ),
            shared_state=_to_state_url(shared_state, name("shared_state")),
        )
