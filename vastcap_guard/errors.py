"""The exceptions vastcap-guard raises.

Every error is a :class:`GuardError` with a stable, machine-readable :attr:`GuardError.reason`
(used as the Scrapy close reason and the CLI outcome) and a message for humans that says what
happened and what to do. No message ever contains the API key; where the key must be named, its
masked form (``vc_…9f3a``) is used.

The classes form two categories, and code that must tell them apart catches the category::

    GuardError                      the job must not run (or go on running)
    ├── AccountError                an answer about the account: it cannot pay. Stops at once,
    │   │                           whatever the failure policy; a fleet shares it.
    │   ├── InvalidKeyError         ERROR_KEY_DOES_NOT_EXIST, or no key configured
    │   ├── AccountDisabledError    ERROR_ACCOUNT_DISABLED
    │   ├── LowBalanceError         the balance is below the minimum
    │   └── BudgetExceededError     the job's spend reached its cap
    ├── CheckError                  the balance could not be checked. The failure policy
    │   │                           (max_failures, require_preflight) decides; each job its own.
    │   ├── ApiUnavailableError     unreachable, timed out, 5xx, not the documented JSON
    │   └── ApiError                an error code this library has no class for
    └── ConfigError                 a setting has a value the guard cannot use (also a ValueError)
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "REASONS",
    "AccountDisabledError",
    "AccountError",
    "ApiError",
    "ApiUnavailableError",
    "BudgetExceededError",
    "CheckError",
    "ConfigError",
    "GuardError",
    "InvalidKeyError",
    "LowBalanceError",
    "error_for_reason",
]


class GuardError(Exception):
    """Base class: the guard says this job must not run (or go on running)."""

    reason: str = "vastcap_error"
    #: exit code of ``vastcap-guard check`` for this outcome
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class AccountError(GuardError):
    """Category: an answer about the account itself, which cannot pay. Stops at once."""


class CheckError(GuardError):
    """Category: the balance could not be checked. Subject to the failure policy."""


class InvalidKeyError(AccountError):
    """The API key does not exist (``ERROR_KEY_DOES_NOT_EXIST``) or none was configured."""

    reason = "vastcap_invalid_key"
    exit_code = 11


class AccountDisabledError(AccountError):
    """The account is disabled (``ERROR_ACCOUNT_DISABLED``)."""

    reason = "vastcap_account_disabled"
    exit_code = 12


class LowBalanceError(AccountError):
    """The balance is below the minimum needed to pay for solving."""

    reason = "vastcap_low_balance"
    exit_code = 10

    def __init__(self, message: str, *, balance: Decimal, minimum: Decimal) -> None:
        super().__init__(message)
        self.balance = balance
        self.minimum = minimum


class BudgetExceededError(AccountError):
    """The money spent since the guard started reached the configured cap."""

    reason = "vastcap_budget_exceeded"
    exit_code = 13

    def __init__(self, message: str, *, spent: Decimal, max_spend: Decimal) -> None:
        super().__init__(message)
        self.spent = spent
        self.max_spend = max_spend


class ApiUnavailableError(CheckError):
    """The API could not be reached, or answered something that is not the documented JSON."""

    reason = "vastcap_api_unavailable"
    exit_code = 14


class ApiError(CheckError):
    """The API answered with an error object this library has no specific class for."""

    reason = "vastcap_api_error"
    exit_code = 15

    def __init__(self, message: str, *, code: str, description: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.description = description


class ConfigError(GuardError, ValueError):
    """A setting or argument has a value the guard cannot use."""

    reason = "vastcap_config_error"
    exit_code = 2

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


#: every stop reason, for documentation and for code that must handle them all
REASONS: dict[str, type[GuardError]] = {
    cls.reason: cls
    for cls in (
        InvalidKeyError,
        AccountDisabledError,
        LowBalanceError,
        BudgetExceededError,
        ApiUnavailableError,
        ApiError,
        ConfigError,
    )
}


def error_for_reason(reason: str, message: str) -> GuardError:
    """Rebuild an error from its reason and message (e.g. a stop another process published)."""
    cls = REASONS.get(reason, ApiError)
    if cls is LowBalanceError:
        return LowBalanceError(message, balance=Decimal(0), minimum=Decimal(0))
    if cls is BudgetExceededError:
        return BudgetExceededError(message, spent=Decimal(0), max_spend=Decimal(0))
    if cls is ApiError:
        return ApiError(message, code=reason)
    if cls is ConfigError:
        return ConfigError(message, setting="")
    return cls(message)
