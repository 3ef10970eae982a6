"""One getBalance poll per account and API, shared by every guarded job in the process.

The poller runs blocking HTTP calls in its own daemon thread, so no event loop (Twisted's reactor,
asyncio, Playwright's) ever waits on the network. Jobs subscribe with a callback that is called
*in the poller thread* for every reading; :class:`vastcap_guard.run.GuardedRun` hands it over to
the job's own loop before acting on it.

- A key's last reading outlives its poller for one interval, so jobs run one after another (a
  decorated function called per item) reuse it instead of polling each time.
- In a process forked while a poller runs (``multiprocessing``, a pre-forking server), the child
  gets its own poller: the first use in the child starts a new thread, which reads the balance
  afresh (the parent's readings, threads and Redis connections are not used).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from ._secrets import key_id, mask_key
from .client import BalanceClient
from .config import GuardConfig
from .errors import ApiUnavailableError, GuardError
from .fleet import FleetCoordinator
from .guard import Guard, Reading

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
    if not isinstance(balance, Decimal) or not balance.is_finite():
        try:
            balance = Decimal(str(balance))
            if not balance.is_finite():
                raise ValueError("not finite")
        except (ArithmeticError, ValueError):
            return Reading(None, ApiUnavailableError("The balance source answered something that is not a number."),
                           monotonic=started, seq=next(_seq))
    return Reading(balance, None, monotonic=started, seq=next(_seq))


Accept = Callable[[Reading], bool]
_Waiter = tuple["concurrent.futures.Future[Reading]", "float | None", Accept]


def _closed_reading() -> Reading:
    return Reading(None, ApiUnavailableError("The guard was closed."), seq=next(_seq))


class _SharedPoller:
    """The poller thread of one account (and API, and fleet). Implements the fleet's ``FleetHost``."""

    def __init__(self, registry_key: tuple[str, ...], config: GuardConfig, factory: ClientFactory,
                 cached: Reading | None = None) -> None:
        self.registry_key = registry_key
        self.masked_key = mask_key(config.api_key)
        self._config = config
        self._factory = factory
        self._cond = threading.Condition()
        self._subs: list[Subscription] = []
        self._waiters: list[_Waiter] = []
        self._latest: Reading | None = cached
        self._next_due: float | None = None
        self._stopping = False
        self._pid = os.getpid()
        #: time.monotonic() when the poll under way started (None between polls): a stuck poll shows
        self._polling_since: float | None = None
        self.calls = 0
        #: fleet mode (``config.shared_state``): created in the poller thread, never on a caller's loop
        self.fleet: FleetCoordinator | None = None
        self._thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"vastcap-guard-poller[{self.masked_key}]", daemon=True)
        thread.start()
        return thread

    def after_fork(self) -> None:
        """In a forked child: nothing of the parent's thread, waiters, readings or fleet is usable.
        The thread is started again on first use (:meth:`ensure_running`)."""
        self._cond = threading.Condition()
        self._waiters = []
        self._latest = None
        self._next_due = None
        self.fleet = None  # its sockets are the parent's: never close them from here
        self.calls = 0
        self._pid = -1

    def ensure_running(self) -> None:
        """Start the thread of a poller inherited through fork (once, in the child)."""
        if self._pid == os.getpid():
            return
        with self._cond:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            if self._subs and not self._stopping:
                due = time.monotonic() + self._interval()
                self._next_due = due
                self._thread = self._new_thread()

    # -- called with _registry_lock held -------------------------------------------------------
    def add(self, sub: Subscription) -> None:
        self.ensure_running()
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

    @property
    def usable(self) -> bool:
        """A subscriber may join: not stopping, and its thread alive (or inherited through fork)."""
        return not self._stopping and (self._thread.is_alive() or self._pid != os.getpid())

    # -- any thread ----------------------------------------------------------------------------
    @property
    def latest(self) -> Reading | None:
        self.ensure_running()
        return self._latest

    def check(self, max_age: float | None, accept: Accept) -> concurrent.futures.Future[Reading]:
        self.ensure_running()
        fut: concurrent.futures.Future[Reading] = concurrent.futures.Future()
        with self._cond:
            latest = self._latest
            if max_age is not None and latest is not None and latest.age <= max_age and accept(latest):
                fut.set_result(latest)
                return fut
            if self._stopping or not self._thread.is_alive():
                fut.set_result(_closed_reading())
                return fut
            self._waiters.append((fut, max_age, accept))
            self._cond.notify_all()
        return fut

    def announce_stop(self, origin: Subscription | None, error: GuardError) -> None:
        """Fleet mode: tell the fleet (and this process's other jobs) that ``origin`` stopped."""
        fleet = self.fleet
        if fleet is not None:
            fleet.announce_stop(origin, error)  # queued: published from the fleet's own thread

    # -- FleetHost: called from the fleet's listener thread ------------------------------------
    def deliver_stop(self, origin: object, reading: Reading) -> None:
        """A fleet stop, to every job in this process but the one that found it."""
        with self._cond:
            subs = [s for s in self._subs if s is not origin]
        for sub in subs:
            sub._deliver(reading)

    def healthy(self) -> bool:
        """The thread is alive and not stuck in one poll (a fleet lease holder must be)."""
        if not self._thread.is_alive() or self._stopping:
            return False
        since = self._polling_since
        return since is None or time.monotonic() - since < self._config.check_deadline

    def take_over(self) -> None:
        """This member now holds the fleet's lease: poll when the last shared reading is an interval old."""
        with self._cond:
            last = self._latest.monotonic if self._latest else time.monotonic() - self._interval()
            self._next_due = max(time.monotonic(), last + self._interval())
            self._cond.notify_all()

    def reschedule(self) -> None:
        """The poll interval got shorter (a faster member joined the fleet): poll on the new one."""
        with self._cond:
            last = self._latest.monotonic if self._latest else time.monotonic()
            due = last + self._interval()
            if self._next_due is None or due < self._next_due:
                self._next_due = due
            self._cond.notify_all()

    def receive(self, reading: Reading) -> None:
        """A reading or a stop published by another member of the fleet."""
        if reading.remote_stop:
            self.deliver_stop(None, reading)
            return
        with self._cond:
            subs = list(self._subs)
            if self._latest is not None and reading.at <= self._latest.at:
                return  # older than what we have (readings can arrive out of order)
            self._latest = reading
            # the fleet's poller is alive: ours only watches for its silence
            self._next_due = time.monotonic() + 1.5 * self._interval()
            ready = [w for w in self._waiters if w[2](reading)]
            self._waiters = [w for w in self._waiters if w not in ready]
        for fut, _, _ in ready:
            if not fut.done():
                fut.set_result(reading)
        for sub in subs:
            sub._deliver(reading)

    # -- poller thread -------------------------------------------------------------------------
    def _interval(self) -> float:
        own = min((s.interval for s in self._subs), default=self._config.interval)
        fleet = self.fleet
        if fleet is not None and fleet.active and fleet.leading:
            return min(own, fleet.fleet_interval())  # the poller polls for the fleet's shortest interval
        return own

    def _run(self) -> None:
        client: BalanceSource | None = None
        factory_error: GuardError | None = None
        try:
            client = self._factory(self._config)
        except GuardError as exc:
            factory_error = exc
        except Exception as exc:  # a custom source that fails to build: a failed check, not a dead thread
            logger.debug("the balance client could not be created", exc_info=True)
            factory_error = ApiUnavailableError(f"The balance client could not be created ({type(exc).__name__}).")
        try:
            if self._config.shared_state and self._config.api_key:
                self.fleet = FleetCoordinator(self._config, self, lambda: next(_seq))
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
                    forced = list(self._waiters)
                    started = self._polling_since = time.monotonic()
                    due = self._next_due if self._next_due is not None and started >= self._next_due else None
                try:
                    self._once(client, factory_error, forced, started, due)
                except Exception:  # never let one bad pass end polling for every job of the account
                    logger.exception("vastcap-guard: a balance check failed unexpectedly")
                    with self._cond:
                        self._polling_since = None
                        self._next_due = time.monotonic() + self._interval()
        finally:
            self._wind_down(client)

    def _wind_down(self, client: BalanceSource | None) -> None:
        with self._cond:
            waiters, self._waiters = self._waiters, []
        for fut, _, _ in waiters:
            if not fut.done():
                fut.set_result(_closed_reading())
        if self.fleet is not None:
            self.fleet.close()
        if client is not None:
            try:
                client.close()
            except Exception:  # pragma: no cover - closing a session does not fail in practice
                logger.debug("closing the balance client failed", exc_info=True)

    def _once(self, client: BalanceSource | None, factory_error: GuardError | None,
              forced: list[_Waiter], started: float, due: float | None) -> None:
        reading = self._poll(client, factory_error, forced)
        with self._cond:
            self._polling_since = None
            if reading is None:  # another member polls for the fleet; watch for its silence
                self._next_due = time.monotonic() + 0.5 * self._interval()
                return
            self._latest = reading
            # periodic polls keep to a fixed grid, so waking late (a busy machine) never adds up
            # to fewer polls than intervals; a forced poll starts the grid afresh
            base = due if due is not None and not forced else started
            self._next_due = max(base + self._interval(), time.monotonic())
            waiters, self._waiters = self._waiters, []
            subs = list(self._subs)
        for fut, _, _ in waiters:
            if not fut.done():
                fut.set_result(reading)
        for sub in subs:
            sub._deliver(reading)

    def _poll(self, client: BalanceSource | None, factory_error: GuardError | None,
              forced: list[_Waiter]) -> Reading | None:
        """One check for this process: a reading, or None when the fleet's poller will provide it."""
        fleet = self.fleet
        if fleet is not None and fleet.active:
            if forced:
                # a fresh-enough shared reading answers the checks only if none of them would stop on
                # it: a stop is never decided on someone else's cached reading
                ages = [w[1] for w in forced]
                if all(a is not None for a in ages):
                    shared = fleet.shared_reading(min(a for a in ages if a is not None))
                    if shared is not None and all(w[2](shared) for w in forced):
                        return shared
            elif not fleet.try_lead():
                return None
        if client is None:
            return Reading(None, factory_error, seq=next(_seq))
        self.calls += 1
        reading = read_balance(client)
        if fleet is not None and fleet.active:
            reading = fleet.publish(reading)
        return reading


_registry: dict[tuple[str, ...], _SharedPoller] = {}
_registry_lock = threading.Lock()
#: the last reading of each account whose poller has ended, kept for that poller's interval
_last_readings: dict[tuple[str, ...], tuple[Reading, float]] = {}


def _recall(rkey: tuple[str, ...]) -> Reading | None:
    """The account's last reading if it is younger than its interval (call with the lock held)."""
    entry = _last_readings.get(rkey)
    if entry is None:
        return None
    reading, interval = entry
    if reading.age > interval or not reading.ok:
        del _last_readings[rkey]
        return None
    return reading


def _before_fork() -> None:
    _registry_lock.acquire()


def _after_fork_in_parent() -> None:
    _registry_lock.release()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    _last_readings.clear()
    for poller in _registry.values():
        poller.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


class Subscription:
    """A guarded job's membership in its account's shared poller. Close it when the job ends."""

    def __init__(
        self,
        config: GuardConfig,
        on_reading: ReadingCallback | None = None,
        *,
        interval: float | None = None,
        client_factory: ClientFactory | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.config = config
        self.interval = float(interval if interval is not None else config.interval)
        self._on_reading = on_reading
        self._closed = False
        factory = client_factory or _default_factory
        # one poller per account and API (and fleet) in the process; the first job's timeout serves all
        rkey: tuple[str, ...] = (
            key_id(config.api_key or "", config.api_url), config.api_url, config.shared_state or "",
        )
        if client_factory is not None:
            rkey = (*rkey, f"factory#{id(client_factory)}")
        with _registry_lock:
            poller = _registry.get(rkey)
            if poller is None or not poller.usable:
                poller = _SharedPoller(rkey, config, factory, _recall(rkey))
                _registry[rkey] = poller
            poller.add(self)
        self._poller = poller
        if guard is not None:
            guard.add_trip_listener(self._tripped)

    def _tripped(self, error: GuardError) -> None:
        if not self._closed:
            self._poller.announce_stop(self, error)

    def __repr__(self) -> str:
        return f"Subscription(key={self._poller.masked_key!r}, interval={self.interval!r}, closed={self._closed})"

    @property
    def latest(self) -> Reading | None:
        """The newest reading of this account, from any subscriber's poll."""
        return self._poller.latest

    @property
    def fleet(self) -> FleetCoordinator | None:
        """Fleet mode: this process's membership in the fleet (``None`` before it joined)."""
        return self._poller.fleet

    def check(self, max_age: float | None = None) -> concurrent.futures.Future[Reading]:
        """A reading no older than ``max_age`` seconds (``None``: a new one), as a future.

        Checks requested while a poll is under way share its result. A cached reading (this
        process's or the fleet's) is reused only when it would not stop this job by itself (a
        balance at or above its minimum): a stop is always confirmed by a fresh reading.
        """
        minimum = self.config.min_balance

        def acceptable(reading: Reading) -> bool:
            return reading.ok and reading.balance is not None and reading.balance >= minimum

        return self._poller.check(max_age, acceptable)

    def _deliver(self, reading: Reading) -> None:
        if self._closed or self._on_reading is None:
            return
        try:
            self._on_reading(reading)
        except Exception:
            logger.exception("vastcap-guard reading callback failed")

    def close(self, wait: float = 0.0) -> threading.Thread | None:
        """Leave the poller; the last one out stops its thread (joined for up to ``wait`` s).

        Returns the poller thread when this was the last subscriber (it is ending: join it, or
        poll ``is_alive()`` from async code), else ``None``.
        """
        if self._closed:
            return None
        self._closed = True
        poller = self._poller
        with _registry_lock:
            last = poller.remove(self)
            if last and _registry.get(poller.registry_key) is poller:
                del _registry[poller.registry_key]
                latest = poller._latest
                if latest is not None and latest.ok:
                    # the next job of this account within the interval reuses it
                    _last_readings[poller.registry_key] = (latest, self.interval)
        thread = self._poller.thread
        if last and wait > 0 and threading.current_thread() is not thread and thread.is_alive():
            thread.join(wait)
        return thread if last else None

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
    guard: Guard | None = None,
) -> Subscription:
    """Join the shared poller for ``config``'s key and API URL (starting it if needed).

    Pass the job's ``guard`` so that, in fleet mode, its stop is published to the fleet.
    """
    return Subscription(config, on_reading, interval=interval, client_factory=client_factory, guard=guard)


def active_pollers() -> int:
    """How many shared pollers run in this process (for tests and diagnostics)."""
    with _registry_lock:
        return len(_registry)
