"""The Selenium guard: a decorator and context manager around a script.

The shared machinery (one run per entry, pre-flight, hooks scoped with a context variable, the
outcome) is :mod:`vastcap_guard.scope`; this module connects it to Selenium: the hook on
``WebDriver.start_session``, where every driver's session starts, and the drivers to stop
(:mod:`._drivers`).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, TypeVar

from selenium.webdriver.remote.webdriver import WebDriver

from ..config import DEFAULT_INTERVAL, DEFAULT_MAX_FAILURES, DEFAULT_TIMEOUT
from ..errors import GuardError
from ..scope import ScopedGuard, SessionHooks, SyncScope, build_config
from ..wording import PYTHON_NAMES, Wording
from ._drivers import Drivers

__all__ = ["SeleniumGuard", "guard"]

Money = Decimal | str | float | int
D = TypeVar("D")

#: every WebDriver subclass (Chrome, Firefox, Remote, undetected-chromedriver...) starts its session here
HOOKS = SessionHooks("selenium", lambda: [(WebDriver, "start_session")])


class _Scope(SyncScope):
    hooks = HOOKS
    wording = Wording(job="Selenium script", names=PYTHON_NAMES)
    logger = logging.getLogger("vastcap_guard.selenium")

    def __init__(self, owner: ScopedGuard) -> None:
        self.drivers = Drivers()
        super().__init__(owner)

    def session_started(self, instance: Any, result: Any) -> None:
        self.watch(instance)  # start_session returns nothing: the driver is the session

    def track(self, obj: Any) -> None:
        self.drivers.track(obj)

    def stop_sessions(self, error: GuardError) -> None:
        self.drivers.stop_all(error)

    def leave(self, error: GuardError | None) -> None:
        self.drivers.leave()  # quits the drivers the stop reached (whatever `error` says now)

    def forget(self) -> None:
        self.drivers.forget_all()


class SeleniumGuard(ScopedGuard):
    """What :func:`guard` returns: a decorator and a context manager (``with guard() as g:``)."""

    scope_class = _Scope

    def __enter__(self) -> SeleniumGuard:
        super().__enter__()
        return self

    def watch(self, driver: D) -> D:
        """Track a WebDriver created outside the guarded code (before the ``with`` block, in another
        thread, by a fixture). It is stopped with the others when the guard stops. Returns its
        argument. Raises the guard's error (after stopping it) if the run has already stopped."""
        return super().watch(driver)


def guard(
    api_key: str | None = None,
    *,
    api_url: str | None = None,
    interval: float = DEFAULT_INTERVAL,
    min_balance: Money = "0.001",
    warn_balance: Money | None = None,
    max_spend: Money | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    timeout: float = DEFAULT_TIMEOUT,
    warn_minutes: float | None = None,
    require_preflight: bool = True,
    shared_state: str | None = None,
) -> SeleniumGuard:
    """Guard a Selenium script against an account that cannot pay.

    ``api_key`` falls back to ``VASTCAP_API_KEY`` and ``api_url`` to ``VASTCAP_API_URL`` (then
    VastCap's own URL). ``warn_minutes`` logs one warning when the spend rate says the money
    lasts fewer minutes than that. ``require_preflight=False`` lets the body start when the first
    check cannot reach the API. ``shared_state="redis://host:6379/0"`` joins a fleet (one poll per
    interval for every process on the key, fleet-wide stops and spend). Bad values raise
    :class:`~vastcap_guard.ConfigError` naming the parameter.
    """
    return SeleniumGuard(build_config(
        api_key, api_url=api_url, interval=interval, min_balance=min_balance, warn_balance=warn_balance,
        max_spend=max_spend, max_failures=max_failures, timeout=timeout, warn_minutes=warn_minutes,
        require_preflight=require_preflight, shared_state=shared_state,
    ))
