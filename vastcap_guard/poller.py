"""One getBalance poll per account and API, shared by every guarded job in the process.

The poller runs blocking HTTP calls in its own daemon thread, so no event loop (Twisted's reactor,
asyncio, Playwright's) ever waits on the network. Adapters subscribe with a callback that is
called *in the poller thread* for every reading; they hand the reading over to their own loop
(``reactor.callFromThread``, ``loop.call_soon_threadsafe``) before acting on it.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._secrets import key_id, mask_key
from .client import BalanceClient
from .config import GuardConfig
from .errors import ApiUnavailableError, GuardError
from .guard import Reading

__all__ = ["BalanceSource", "Subscription", "active_pollers", "read_balance", "subscribe"]

logger = logging.getLogger("vastcap_guard.poller")


class BalanceSource(Protocol):
    def get_balance(self) -> object: ...

    def close(self) -> None: ...


ClientFactory = Callable[[GuardConfig], BalanceSource]
ReadingCallback = Callable[[Reading], None]

_seq = itertools.count(1)


def _default_factory(config: GuardConfig) -> BalanceSource:
    return BalanceClient(config.api_key, api_url=config.api_url, timeout=config.timeout)


def read_balance(client: BalanceSource) -> Reading:
    """One check: a reading with a balance or a :class:`GuardError`, never another exception."""
    started = time.monotonic()
    try:
        balance = client.get_balance()
    except GuardError as exc:
        return Reading(None, exc, monotonic=started, seq=next(_seq))
    except Exception as exc:  # a bug or an odd library error must not crash a user's job
        logger.debug("getBalance raised %s", type(exc).__name__, exc_info=True)
        return Reading(
            None,
            ApiUnavailableError(f"getBalance failed unexpectedly ({type(exc).__name__})."),
            monotonic=started,
            seq=next(_seq),
        )
    from decimal import Decimal

    if not isinstance(balance, Decimal):
        balance = Decimal(str(balance))
    return Reading(balance, None, monotonic=started, seq=next(_seq))


class _SharedPoller:
    def __init__(self, registry_key: tuple[str, str, float], config: GuardConfig, factory: ClientFactory) -> None:
        self.registry_key = registry_key
        self.masked_key = mask_key(config.api_key)
        self._config = config
        self._factory = factory
        self._cond = threading.Condition()
        self._subs: list[Subscription] = []
        self._waiters: list[concurrent.futures.Future[Reading]] = []
        self._latest: Reading | None = None
        self._next_due: float | None = None
        self._stopping = False
        self.calls = 0
        self._thread = threading.Thread(
            target=self._run, name=f"vastcap-guard-poller[{self.masked_key}]", daemon=True
        )
        self._thread.start()

    # -- called with _registry_lock held -------------------------------------------------------
    def add(self, sub: Subscription) -> None:
        with self._cond:
            self._subs.append(sub)
            due = (self._latest.monotonic if self._latest else time.monotonic()) + sub.interval
            if self._next_due is None or due < self._next_due:
                self._next_due = due
            self._cond.notify_all()

    def remove(self, sub: Subscription) -> bool:
        """Drop a subscriber; True when none is left (the poller then stops)."""
        with self._cond:
            if sub in self._subs:
                self._subs.remove(sub)
            if not self._subs:
                self._stopping = True
                self._cond.notify_all()
                return True
            return False

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    # -- any thread ----------------------------------------------------------------------------
    @property
    def latest(self) -> Reading | None:
        return self._latest

    def check(self, max_age: float | None) -> concurrent.futures.Future[Reading]:
        fut: concurrent.futures.Future[Reading] = concurrent.futures.Future()
        with self._cond:
            latest = self._latest
            if max_age is not None and latest is not None and latest.age <= max_age:
                fut.set_result(latest)
                return fut
            if self._stopping:
                fut.set_result(Reading(None, ApiUnavailableError("The guard was closed."), seq=next(_seq)))
                return fut
            self._waiters.append(fut)
            self._cond.notify_all()
        return fut

    # -- poller thread -------------------------------------------------------------------------
    def _interval(self) -> float:
        return min((s.interval for s in self._subs), default=self._config.interval)

    def _run(self) -> None:
        client: BalanceSource | None = None
        try:
            client = self._factory(self._config)
        except GuardError as exc:
            client = None
            factory_error: GuardError | None = exc
        else:
            factory_error = None
        try:
            while True:
                with self._cond:
                    while not self._stopping:
                        if self._waiters:
                            break
                        now = time.monotonic()
                        if self._next_due is not None and now >= self._next_due:
                            break
                        timeout = None if self._next_due is None else self._next_due - now
                        self._cond.wait(timeout)
                    if self._stopping:
                        break
                    started = time.monotonic()
                if client is None:
                    reading = Reading(None, factory_error, seq=next(_seq))
                else:
                    self.calls += 1
                    reading = read_balance(client)
                with self._cond:
                    self._latest = reading
                    self._next_due = max(started + self._interval(), time.monotonic())
                    waiters, self._waiters = self._waiters, []
                    subs = list(self._subs)
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(reading)
                for sub in subs:
                    sub._deliver(reading)
        finally:
            with self._cond:
                waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(Reading(None, ApiUnavailableError("The guard was closed."), seq=next(_seq)))
            if client is not None:
                try:
                    client.close()
                except Exception:  # pragma: no cover - closing a session does not fail in practice
                    logger.debug("closing the balance client failed", exc_info=True)


_registry: dict[tuple[str, str, float], _SharedPoller] = {}
_registry_lock = threading.Lock()


class Subscription:
    """A guarded job's membership in its account's shared poller. Close it when the job ends."""

    def __init__(
        self,
        config: GuardConfig,
        on_reading: ReadingCallback | None = None,
        *,
        interval: float | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.config = config
        self.interval = float(interval if interval is not None else config.interval)
        self._on_reading = on_reading
        self._closed = False
        factory = client_factory or _default_factory
        rkey = (key_id(config.api_key or "", config.api_url), config.api_url, config.timeout)
        if client_factory is not None:
            rkey = (rkey[0], f"{rkey[1]}#{id(client_factory)}", rkey[2])
        with _registry_lock:
            poller = _registry.get(rkey)
            if poller is None or not poller.thread.is_alive() or poller._stopping:
                poller = _SharedPoller(rkey, config, factory)
                _registry[rkey] = poller
            poller.add(self)
        self._poller = poller

    def __repr__(self) -> str:
        return f"Subscription(key={self._poller.masked_key!r}, interval={self.interval!r}, closed={self._closed})"

    @property
    def latest(self) -> Reading | None:
        """The newest reading of this account, from any subscriber's poll."""
        return self._poller.latest

    def check(self, max_age: float | None = None) -> concurrent.futures.Future[Reading]:
        """A reading no older than ``max_age`` seconds (``None``: a new one), as a future.

        Checks requested while a poll is under way share its result.
        """
        return self._poller.check(max_age)

    def _deliver(self, reading: Reading) -> None:
        if self._closed or self._on_reading is None:
            return
        try:
            self._on_reading(reading)
        except Exception:
            logger.exception("vastcap-guard reading callback failed")

    def close(self, wait: float = 0.0) -> None:
        """Leave the poller; the last one out stops its thread (joined for up to ``wait`` s)."""
        if self._closed:
            return
        self._closed = True
        with _registry_lock:
            last = self._poller.remove(self)
            if last and _registry.get(self._poller.registry_key) is self._poller:
                del _registry[self._poller.registry_key]
        if last and wait > 0 and threading.current_thread() is not self._poller.thread:
            self._poller.thread.join(wait)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def subscribe(
    config: GuardConfig,
    on_reading: ReadingCallback | None = None,
    *,
    interval: float | None = None,
    client_factory: ClientFactory | None = None,
) -> Subscription:
    """Join the shared poller for ``config``'s key and API URL (starting it if needed)."""
    return Subscription(config, on_reading, interval=interval, client_factory=client_factory)


def active_pollers() -> int:
    """How many shared pollers run in this process (for tests and diagnostics)."""
    with _registry_lock:
        return len(_registry)
