"""Turning a getBalance answer (status and body bytes) into a Decimal or an error."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ._secrets import mask_key
from .config import DEFAULT_MIN_BALANCE
from .errors import (
    AccountDisabledError,
    ApiError,
    GuardError,
    InvalidKeyError,
    LowBalanceError,
)

__all__ = ["MalformedResponse", "error_from_object", "parse_balance_response"]

#: answers longer than this are not JSON the API would send
MAX_BODY_BYTES = 64 * 1024
#: no account holds more than this: a larger number is a broken answer
MAX_BALANCE_DIGITS = 13


class MalformedResponse(Exception):
    """The body is not the documented JSON (a transient failure: worth retrying)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _short(text: object, limit: int = 80, secret: str | None = None) -> str:
    s = str(text).replace("\n", " ").replace("\r", " ")
    if secret:
        # an API (or a proxy in front of it) that echoes the key must not make us log it
        s = s.replace(secret, mask_key(secret))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def error_from_object(err: Any, secret: str | None = None) -> GuardError:
    """Map the API's ``error`` object to the matching :class:`GuardError` (``secret`` is masked)."""
    if not isinstance(err, dict):
        err = {}
    code = err.get("errorCode")
    code = _short(code, 60, secret) if isinstance(code, str) and code else "ERROR_UNKNOWN"
    description = err.get("errorDescription")
    description = _short(description, 200, secret) if isinstance(description, str) else ""
    said = f" (VastCap said: {description})" if description else ""
    if code == "ERROR_KEY_DOES_NOT_EXIST":
        return InvalidKeyError(
            f"VastCap does not know this API key{said}. "
            "Check the key in your settings or the VASTCAP_API_KEY environment variable."
        )
    if code == "ERROR_ACCOUNT_DISABLED":
        return AccountDisabledError(
            f"The VastCap account is disabled{said}. Contact VastCap support or use another account."
        )
    if code in {"ERROR_ZERO_BALANCE", "ERROR_INSUFFICIENT_BALANCE"}:
        return LowBalanceError(
            f"VastCap reports the balance is insufficient ({code}){said}. "
            "Top up the account from the VastCap dashboard.",
            balance=Decimal(0),
            minimum=DEFAULT_MIN_BALANCE,
        )
    return ApiError(
        f"VastCap answered getBalance with error {_short(code, 60)}{said}.",
        code=code,
        description=description,
    )


def parse_balance_response(status: int, body: bytes, secret: str | None = None) -> Decimal:
    """Parse a getBalance answer.

    Returns the balance as an exact :class:`~decimal.Decimal`. Raises a :class:`GuardError`
    for an ``error`` object (a definitive answer, whatever the HTTP status) and
    :class:`MalformedResponse` for anything else that is not ``{"balance": <number>}``. Text taken
    from the body never shows ``secret`` (the API key): it is masked.
    """
    if len(body) > MAX_BODY_BYTES:
        raise MalformedResponse(f"HTTP {status}, body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(
            body.decode("utf-8"),
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        kind = "HTML" if body.lstrip()[:1] == b"<" else "not JSON"
        raise MalformedResponse(f"HTTP {status}, body is {kind}") from exc
    if not isinstance(data, dict):
        raise MalformedResponse(f"HTTP {status}, JSON is a {type(data).__name__}, not an object")
    err = data.get("error")
    if isinstance(err, dict):
        raise error_from_object(err, secret)
    error_id = data.get("errorId")
    if isinstance(error_id, Decimal) and error_id != 0 and isinstance(data.get("errorCode"), str):
        # the flat form some solver APIs use: {"errorId": 1, "errorCode": ...}
        raise error_from_object(data, secret)
    if status >= 400:
        raise MalformedResponse(f"HTTP {status} without an error object")
    if "balance" not in data:
        raise MalformedResponse(f"HTTP {status}, JSON has no 'balance'")
    balance = data["balance"]
    # bool is not a number here; json gives Decimal for every number thanks to parse_*.
    if not isinstance(balance, Decimal):
        raise MalformedResponse(f"HTTP {status}, balance is not a number: {_short(repr(balance), 40, secret)}")
    if not balance.is_finite():
        raise MalformedResponse(f"HTTP {status}, balance is not finite")
    if balance.adjusted() >= MAX_BALANCE_DIGITS or (not balance.is_zero() and balance.adjusted() < -MAX_BALANCE_DIGITS):
        raise MalformedResponse(f"HTTP {status}, balance is out of range")
    # -0 reads as 0; no arithmetic, so every digit the API sent is kept
    return Decimal(0) if balance.is_zero() else balance
