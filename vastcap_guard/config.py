"""Settings: defaults, validation and money parsing, in one place for every adapter.

Nothing here does I/O. :class:`GuardConfig` is what a guard watches and when it stops; build it
with :meth:`GuardConfig.build`, which accepts what users write (strings from settings files or the
environment) and raises :class:`~vastcap_guard.ConfigError` naming the setting the user knows
(``VASTCAP_CHECK_INTERVAL`` in Scrapy, ``interval=`` in Python, ``--interval`` on the CLI).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal
from urllib.parse import urlsplit

from ._secrets import mask_key, safe_url
from .errors import ConfigError

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_FAILURES",
    "DEFAULT_MIN_BALANCE",
    "DEFAULT_PAUSE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_INTERVAL",
    "MAX_TIMEOUT",
    "MIN_INTERVAL",
    "GuardConfig",
    "OnLowBalance",
    "check_api_url",
    "parse_cost",
    "to_decimal",
]

logger = logging.getLogger("vastcap_guard")

#: VastCap's own API
DEFAULT_API_URL = "https://captcha.vast.sh/api/solver"
#: the API's minimum balance for solving
DEFAULT_MIN_BALANCE = Decimal("0.001")
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_FAILURES = 3
#: how long a paused job waits for a top-up before it closes (``on_low_balance="pause"``)
DEFAULT_PAUSE_TIMEOUT = 3600.0
#: shorter intervals are raised to this (with a warning): the API is not polled more than 10 times a second
MIN_INTERVAL = 0.1
#: a week: longer is a typo (and overflows timers)
MAX_INTERVAL = 7 * 24 * 3600.0
#: an hour for one getBalance attempt: longer is a typo
MAX_TIMEOUT = 3600.0
#: 30 days of waiting for a top-up
MAX_PAUSE_TIMEOUT = 30 * 24 * 3600.0
#: no account holds more than this: a larger limit is a typo
MAX_AMOUNT = Decimal(10) ** 9

OnLowBalance = Literal["close", "pause"]


# -- values ------------------------------------------------------------------------------------
def check_api_url(api_url: object, setting: str = "api_url") -> str:
    """Validate an API base URL; return it without a trailing slash. Messages never show credentials."""
    if not isinstance(api_url, str) or not api_url.strip():
        shown = safe_url(api_url) if isinstance(api_url, str) else repr(api_url)
        raise ConfigError(f"{setting} must be an http(s) URL, got {shown!r}.", setting=setting)
    url = api_url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in {"http", "https"} and bool(parts.netloc) and parts.hostname is not None
        if ok:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{setting} must be an http:// or https:// URL, got {safe_url(url)!r}.", setting=setting
        )
    return url


def to_decimal(value: object, setting: str, *, allow_none: bool = False) -> Decimal | None:
    """Money from a setting: exact, finite, between 0 and a billion."""
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


def parse_cost(cost: object, what: str = "cost") -> Decimal:
    """A spend estimate in USD: a finite amount >= 0 (not a bool). Raises :class:`ConfigError`."""
    if cost is None:
        raise ConfigError(f"{what} must be an amount in USD, got None.", setting=what)
    amount = to_decimal(cost, what)
    assert amount is not None
    return amount


def _to_seconds(value: object, setting: str, *, maximum: float, unit: str = "seconds") -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{setting} must be a number of {unit}, got {value!r}.", setting=setting)
    try:
        seconds = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{setting} must be a number of {unit}, got {value!r}.", setting=setting) from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > maximum:
        raise ConfigError(
            f"{setting} must be a positive number of {unit}, at most {maximum:g}, got {value!r}.",
            setting=setting,
        )
    return seconds


def _to_count(value: object, setting: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{setting} must be a whole number >= 0, got {value!r}.", setting=setting)
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{setting} must be a whole number >= 0, got {value!r}.", setting=setting) from None
    if not math.isfinite(number) or number < 0 or number != int(number) or number > 10**6:
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


def _to_on_low_balance(value: object, setting: str) -> OnLowBalance:
    text = value.strip().lower() if isinstance(value, str) else value
    if text == "close":
        return "close"
    if text == "pause":
        return "pause"
    raise ConfigError(f'{setting} must be "close" or "pause", got {value!r}.', setting=setting)


def _safe_state(value: object) -> object:
    return safe_url(value) if isinstance(value, str) else value


def clean_key(key: str) -> str:
    """A key as typed or read from a file: surrounding whitespace and a UTF-8 byte order mark removed."""
    return key.replace("\ufeff", "").strip()


# -- the configuration -------------------------------------------------------------------------
@dataclass(frozen=True)
class GuardConfig:
    """What a guard watches and when it stops. Build it with :meth:`build` to validate input.

    ``api_key`` may be ``None``: a guard without a key stops at pre-flight with
    :class:`~vastcap_guard.InvalidKeyError` rather than failing open.
    """

    api_key: str | None = field(repr=False)
    api_url: str = DEFAULT_API_URL
    interval: float = DEFAULT_INTERVAL
    min_balance: Decimal = DEFAULT_MIN_BALANCE
    warn_balance: Decimal | None = None
    max_spend: Decimal | None = None
    max_failures: int = DEFAULT_MAX_FAILURES
    timeout: float = DEFAULT_TIMEOUT
    #: stop when the pre-flight check fails (API unreachable): nothing was ever confirmed
    require_preflight: bool = True
    #: warn once when the burn-rate forecast says the money lasts fewer minutes than this
    warn_minutes: float | None = None
    #: fleet mode: a Redis URL (``redis://host:6379/0``) shared by every member of the fleet
    shared_state: str | None = None
    #: what a low balance does: ``"close"`` the job, or ``"pause"`` it until a top-up
    on_low_balance: OnLowBalance = "close"
    #: a pause longer than this closes the job with ``vastcap_low_balance``
    pause_timeout: float = DEFAULT_PAUSE_TIMEOUT
    #: where the key came from, for messages: ``"environment"`` (``VASTCAP_API_KEY``) or ``"argument"``
    key_source: Literal["environment", "argument"] | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"GuardConfig(api_key={mask_key(self.api_key)!r}, api_url={safe_url(self.api_url)!r}, "
            f"interval={self.interval!r}, min_balance={self.min_balance!r}, "
            f"warn_balance={self.warn_balance!r}, max_spend={self.max_spend!r}, "
            f"max_failures={self.max_failures!r}, timeout={self.timeout!r}, "
            f"require_preflight={self.require_preflight!r}, warn_minutes={self.warn_minutes!r}, "
            f"shared_state={_safe_state(self.shared_state)!r}, on_low_balance={self.on_low_balance!r})"
        )

    @property
    def masked_key(self) -> str:
        return mask_key(self.api_key)

    @property
    def safe_api_url(self) -> str:
        """The API URL without credentials, for messages."""
        return safe_url(self.api_url)

    @property
    def check_deadline(self) -> float:
        """The longest a job waits for one balance reading: the client's whole retry budget
        (3 x ``timeout``) and a margin. Past it, the check counts as failed."""
        return 3 * self.timeout + 5

    @classmethod
    def build(
        cls,
        api_key: object = None,
        *,
        api_url: object = None,
        interval: object = DEFAULT_INTERVAL,
        min_balance: object = DEFAULT_MIN_BALANCE,
        warn_balance: object = None,
        max_spend: object = None,
        max_failures: object = DEFAULT_MAX_FAILURES,
        timeout: object = DEFAULT_TIMEOUT,
        require_preflight: object = True,
        warn_minutes: object = None,
        shared_state: object = None,
        on_low_balance: object = "close",
        pause_timeout: object = DEFAULT_PAUSE_TIMEOUT,
        names: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> GuardConfig:
        """Validate and coerce user input (strings from settings files or the environment are fine).

        The key falls back to ``VASTCAP_API_KEY`` and the URL to ``VASTCAP_API_URL`` in
        ``environ`` (default ``os.environ``). ``names`` maps field names to the names the user
        knows (``{"interval": "VASTCAP_CHECK_INTERVAL"}``) so that a :class:`ConfigError` names
        the setting the user wrote. An interval below :data:`MIN_INTERVAL` is raised to it, with
        one warning.
        """
        env = os.environ if environ is None else environ
        n = dict(names or {})

        def name(f: str) -> str:
            return n.get(f, f)

        key: str | None
        source: Literal["environment", "argument"] | None
        if api_key is None or api_key == "":
            key = env.get("VASTCAP_API_KEY") if api_key is None else None
            source = "environment" if key else None
        elif isinstance(api_key, str):
            key, source = api_key, "argument"
        else:
            raise ConfigError(f"{name('api_key')} must be a string.", setting=name("api_key"))
        key = clean_key(key) if key else None
        if api_url not in (None, ""):
            url, url_setting = api_url, name("api_url")
        elif env.get("VASTCAP_API_URL"):
            url, url_setting = env["VASTCAP_API_URL"], "the VASTCAP_API_URL environment variable"
        else:
            url, url_setting = DEFAULT_API_URL, name("api_url")
        minimum = to_decimal(min_balance, name("min_balance"))
        warn = to_decimal(warn_balance, name("warn_balance"), allow_none=True)
        cap = to_decimal(max_spend, name("max_spend"), allow_none=True)
        if cap is not None and cap == 0:
            raise ConfigError(f"{name('max_spend')} must be above 0 (or unset).", setting=name("max_spend"))
        assert minimum is not None
        every = _to_seconds(interval, name("interval"), maximum=MAX_INTERVAL)
        if every < MIN_INTERVAL:
            logger.warning(
                "vastcap-guard: %s of %gs is below the floor of %gs; checking every %gs.",
                name("interval"), every, MIN_INTERVAL, MIN_INTERVAL,
            )
            every = MIN_INTERVAL
        return cls(
            api_key=key or None,
            api_url=check_api_url(url, url_setting),
            interval=every,
            min_balance=minimum,
            warn_balance=warn,
            max_spend=cap,
            max_failures=_to_count(max_failures, name("max_failures")),
            timeout=_to_seconds(timeout, name("timeout"), maximum=MAX_TIMEOUT),
            require_preflight=_to_bool(require_preflight, name("require_preflight")),
            warn_minutes=(
                None
                if warn_minutes is None or (isinstance(warn_minutes, str) and not warn_minutes.strip())
                else _to_seconds(warn_minutes, name("warn_minutes"), maximum=1e9, unit="minutes")
            ),
            shared_state=_to_state_url(shared_state, name("shared_state")),
            on_low_balance=_to_on_low_balance(on_low_balance, name("on_low_balance")),
            pause_timeout=_to_seconds(pause_timeout, name("pause_timeout"), maximum=MAX_PAUSE_TIMEOUT),
            key_source=source if key else None,
        )
