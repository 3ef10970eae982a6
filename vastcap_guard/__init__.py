"""vastcap-guard: stop scraping jobs before they spend on a VastCap account that cannot pay.

The core (this package's top level) imports no framework: the Scrapy adapter lives in
``vastcap_guard.scrapy``, the Playwright one in ``vastcap_guard.playwright``.
"""

from ._secrets import mask_key
from .client import DEFAULT_API_URL, BalanceClient
from .config import DEFAULT_MIN_BALANCE, GuardConfig
from .errors import (
    REASONS,
    AccountDisabledError,
    ApiError,
    ApiUnavailableError,
    BudgetExceededError,
    ConfigError,
    GuardError,
    InvalidKeyError,
    LowBalanceError,
)
from .forecast import BurnRate, Forecast
from .guard import Action, Guard, Reading, Verdict
from .poller import Subscription, subscribe

#: the one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic])
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_MIN_BALANCE",
    "REASONS",
    "AccountDisabledError",
    "Action",
    "ApiError",
    "ApiUnavailableError",
    "BalanceClient",
    "BudgetExceededError",
    "BurnRate",
    "ConfigError",
    "Forecast",
    "Guard",
    "GuardConfig",
    "GuardError",
    "InvalidKeyError",
    "LowBalanceError",
    "Reading",
    "Subscription",
    "Verdict",
    "__version__",
    "mask_key",
    "subscribe",
]
