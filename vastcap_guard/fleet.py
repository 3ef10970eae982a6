"""Fleet mode: many processes on one VastCap account, coordinated through Redis.

Opt in with ``shared_state="redis://host:6379/0"`` (``VASTCAP_SHARED_STATE`` in Scrapy). Within each
process the shared poller still runs one thread per account; across processes:

- **one getBalance per interval for the fleet**: a short lease in Redis elects the poller, which
  polls at the shortest interval of the live members and publishes every reading on a channel; the
  others use it. The lease lives :data:`LEASE_TTL` seconds and its holder renews it every
  :data:`LEASE_HEARTBEAT` seconds from its own thread, whatever the poll interval, while its
  poller thread is alive and not stuck. Every other member looks at the lease as often, so a
  poller killed without warning (SIGKILL, a lost spot machine) is replaced within
  ``LEASE_TTL + LEASE_HEARTBEAT`` (4 s); one that exits gracefully hands over at once. The new
  poller keeps the fleet's schedule (it polls when the last shared reading is an interval old).
  Two pollers overlap only when a holder stalls for longer than the lease (a frozen process, a
  Redis slower than ``LEASE_TTL``): its next poll then finds the lease gone and does not happen,
  so the overlap is at most the one poll that was already under way;
- **fleet-wide stops**: a member whose guard stops on the account itself (low balance, spend cap,
  invalid key, disabled account) publishes the reason; every running member stops with it within
  about a second, whatever its interval. Failures to reach the API are never published: each
  member applies its own failure policy to the fleet's readings. Pre-flight checks never stop on
  someone else's cached reading, so a job started after a top-up runs;
- **fleet-wide spend**: ``max_spend`` counts what the account spent since the first live member
  started (every decrease between two successive balances, in the order they were read);
- **Redis down**: each member falls back to its own polling with one warning, and goes back to
  the fleet when Redis answers again. Redis trouble never stops a job.

Redis holds no secret: keys are namespaced by a hash of the API key and URL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from ._secrets import key_id, safe_url
from .config import GuardConfig
from .errors import AccountError, GuardError, error_for_reason
from .guard import Reading

__all__ = ["NAMESPACE", "FleetCoordinator", "FleetHost"]

logger = logging.getLogger("vastcap_guard.fleet")

NAMESPACE = "vastcap-guard"


#: seconds a poller lease lives without renewal
LEASE_TTL = 3.0
#: seconds between renewals by the holder, and between looks at the lease by the others
LEASE_HEARTBEAT = 1.0


class FleetHost(Protocol):
    """What the fleet needs from the process's poller of the account (called from the fleet's thread)."""

    def healthy(self) -> bool:
        """The poller thread is alive and not stuck in one poll: this member may keep the lease."""

    def take_over(self) -> None:
        """This member now holds the lease: poll on the fleet's schedule."""

    def receive(self, reading: Reading) -> None:
        """A reading, or a stop (``remote_stop``), that another member of the fleet published."""

    def deliver_stop(self, origin: object, reading: Reading) -> None:
        """A stop this process found, for every job of the process but ``origin``."""

    def reschedule(self) -> None:
        """The fleet's interval got shorter: the leader polls on the new one."""

# Renew the lease only if we still hold it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class FleetCoordinator:
    """One process's membership in an account's fleet, used by its shared poller. Thread-safe.

    Its listener thread receives the fleet's readings and stops (handed to the poller) and
    publishes this process's stops.
    """

    def __init__(self, config: GuardConfig, host: FleetHost, next_seq: Callable[[], int]) -> None:
        assert config.shared_state
        self.url = config.shared_state
        self.interval = config.interval
        self.timeout = config.timeout
        self.member = uuid.uuid4().hex
        self._host = host
        self._next_seq = next_seq
        ns = f"{NAMESPACE}:{key_id(config.api_key or '', config.api_url)}"
        self.k_lease = f"{ns}:lease"
        self.k_reading = f"{ns}:reading"
        self.k_last = f"{ns}:last_balance"
        self.k_spent = f"{ns}:spent_total"
        self.k_base = f"{ns}:spent_base"
        self.k_members = f"{ns}:members"
        self.channel = f"{ns}:events"
        self._stopping = threading.Event()
        self._outbox: list[tuple[object, GuardError]] = []
        self._outbox_lock = threading.Lock()
        self._degraded = False
        self._joined = False
        self._redis: Any = None
        self._pubsub: Any = None
        self._fleet_interval = self.interval
        self.leading = False
        self.published = 0
        self._connect()
        self._thread = threading.Thread(target=self._listen, name="vastcap-guard-fleet", daemon=True)
        self._thread.start()

    # -- connection and degradation ----------------------------------------------------------
    @property
    def active(self) -> bool:
        """Redis answers: the fleet coordinates. False: this member polls on its own."""
        return not self._degraded and self._redis is not None

    def _connect(self) -> bool:
        self._drop_connections()
        try:
            import redis
        except ImportError:
            self._degrade("the 'redis' package is not installed (pip install 'vastcap-guard[redis]')")
            return False
        try:
            client: Any = redis.Redis.from_url(
                self.url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
            )
            client.ping()
            pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.channel)
            self._redis, self._pubsub = client, pubsub
            self._join()
        except Exception as exc:  # any Redis trouble: fall back, never crash the job
            self._drop_connections()
            self._degrade(type(exc).__name__)
            return False
        if self._stopping.is_set():
            self._drop_connections()
            return False
        if self._degraded:
            logger.warning("vastcap-guard: shared state at %s is back; the fleet coordinates again.",
                           safe_url(self.url))
        self._degraded = False
        return True

    def _drop_connections(self) -> None:
        pubsub, client, self._pubsub, self._redis = self._pubsub, self._redis, None, None
        for obj in (pubsub, client):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: S110 - closing a dead connection
                pass

    def _degrade(self, why: str) -> None:
        if not self._degraded:
            logger.warning(
                "vastcap-guard: shared state at %s is unreachable (%s); this member polls VastCap on "
                "its own until it is back. The job goes on.", safe_url(self.url), why,
            )
        self._degraded = True
        self.leading = False

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(redis)``; on any Redis error degrade and return None."""
        client = self._redis
        if client is None or self._degraded:
            return None
        try:
            return fn(client)
        except Exception as exc:
            self._drop_connections()
            self._degrade(type(exc).__name__)
            return None

    # -- membership ---------------------------------------------------------------------------
    def _heartbeat_period(self) -> float:
        return min(max(self.interval / 2, 0.5), 10.0)

    def _membership(self) -> str:
        expires = time.time() + 3 * self._heartbeat_period() + 2 * self.timeout + 5
        return json.dumps({"expires": expires, "interval": self.interval})

    def _live_members(self, r: Any) -> dict[str, float]:
        """member -> interval of the members whose membership has not expired (expired ones are removed)."""
        now = time.time()
        live: dict[str, float] = {}
        dead: list[Any] = []
        for member, raw in r.hgetall(self.k_members).items():
            data = _decode(raw)
            try:
                expires = float(data["expires"]) if data else 0.0
                interval = float(data["interval"]) if data else 0.0
            except (KeyError, TypeError, ValueError):
                expires, interval = 0.0, 0.0
            if expires < now or interval <= 0:
                dead.append(member)
            else:
                live[member.decode() if isinstance(member, bytes) else str(member)] = interval
        if dead:
            r.hdel(self.k_members, *dead)
        return live

    def _join(self) -> None:
        r = self._redis
        assert r is not None
        live = self._live_members(r)
        others = [m for m in live if m != self.member]
        if not self._joined and not others:
            # the fleet starts now: its spend counts from here (a reconnect never resets it)
            r.set(self.k_base, r.get(self.k_spent) or b"0")
        r.hset(self.k_members, self.member, self._membership())
        self._joined = True
        self._fleet_interval = min([self.interval, *live.values()])
        # tell the fleet's poller at once if it must now poll more often
        r.publish(self.channel, json.dumps({"type": "hello", "member": self.member, "interval": self.interval}))

    def _heartbeat(self) -> None:
        def beat(r: Any) -> None:
            r.hset(self.k_members, self.member, self._membership())
            self._set_fleet_interval(min([self.interval, *self._live_members(r).values()]))

        self._call(beat)

    def _set_fleet_interval(self, interval: float) -> None:
        faster = interval < self._fleet_interval
        self._fleet_interval = interval
        if faster and self.leading:
            self._host.reschedule()

    def fleet_interval(self) -> float:
        """The shortest interval of the live members: the fleet's poller polls that often."""
        return self._fleet_interval

    # -- leadership ---------------------------------------------------------------------------
    def _ttl_ms(self) -> int:
        return int(LEASE_TTL * 1000)

    def _lease_beat(self) -> None:
        """Every LEASE_HEARTBEAT: the holder renews its lease (or gives it up if its poller is
        stuck); the others take a lease nobody holds."""
        if self.leading:
            if not self._host.healthy():
                self._call(lambda r: r.eval(_RELEASE, 1, self.k_lease, self.member))
                self.leading = False
                return
            renewed = self._call(lambda r: r.eval(_RENEW, 1, self.k_lease, self.member, self._ttl_ms()))
            if renewed is not None and not renewed:
                self.leading = False  # it expired meanwhile: another member may hold it now
            return
        self._take_free_lease()

    def _take_free_lease(self) -> None:
        if not self._host.healthy():
            return
        taken = self._call(lambda r: r.set(self.k_lease, self.member, nx=True, px=self._ttl_ms()))
        if taken:
            self.leading = True
            self._host.take_over()

    def try_lead(self) -> bool:
        """Hold (or take) the poller lease. False when another live member holds it."""
        def attempt(r: Any) -> bool:
            if r.set(self.k_lease, self.member, nx=True, px=self._ttl_ms()):
                return True
            return bool(r.eval(_RENEW, 1, self.k_lease, self.member, self._ttl_ms()))

        held = self._call(attempt)
        if held is None:  # Redis down: poll on our own
            return True
        self.leading = bool(held)
        return self.leading

    # -- readings ------------------------------------------------------------------------------
    def shared_reading(self, max_age: float) -> Reading | None:
        """The fleet's latest balance reading if it is no older than ``max_age`` seconds."""
        data = _decode(self._call(lambda r: r.get(self.k_reading)))
        if data is None:
            return None
        try:
            if time.time() - float(data["at"]) > max_age:
                return None
            return self._reading_from(data)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return None

    def publish(self, reading: Reading) -> Reading:
        """Share a reading this member made; returns it with the fleet-wide spend attached."""
        def do(r: Any) -> Reading:
            spent = self._account_spend(r, reading) if reading.balance is not None else None
            data = {
                "type": "reading", "member": self.member, "at": reading.at,
                "balance": str(reading.balance) if reading.balance is not None else None,
                "reason": reading.error.reason if reading.error else None,
                "message": reading.error.message if reading.error else None,
                "spent": str(spent) if spent is not None else None,
            }
            payload = json.dumps(data)
            if reading.balance is not None:
                r.set(self.k_reading, payload, px=self._ttl_ms())
            r.publish(self.channel, payload)
            self.published += 1
            return _with(reading, fleet_spent=spent)

        out = self._call(do)
        return out if out is not None else reading

    def _account_spend(self, r: Any, reading: Reading) -> Decimal:
        """Add the decrease since the previous balance (in reading order) to the fleet's total,
        atomically; return the spend since the fleet began."""
        import redis

        assert reading.balance is not None
        while True:
            with r.pipeline() as pipe:
                try:
                    pipe.watch(self.k_last, self.k_spent)
                    last = _decode(pipe.get(self.k_last))
                    total = _dec(pipe.get(self.k_spent))
                    base = _dec(pipe.get(self.k_base))
                    last_at = float(last["at"]) if last and "at" in last else None
                    if last_at is not None and reading.at <= last_at:
                        pipe.unwatch()
                        return max(total - base, Decimal(0))  # an older reading: already counted
                    if last is not None and last.get("balance") is not None:
                        prev = _dec(last["balance"])
                        if reading.balance < prev:
                            total += prev - reading.balance
                    pipe.multi()
                    pipe.set(self.k_last, json.dumps({"balance": str(reading.balance), "at": reading.at}))
                    pipe.set(self.k_spent, str(total))
                    pipe.execute()
                    return max(total - base, Decimal(0))
                except redis.WatchError:
                    continue

    # -- stops ---------------------------------------------------------------------------------
    def announce_stop(self, origin: object, error: GuardError) -> None:
        """Queue a stop about the account for the fleet (published from the listener thread)."""
        if not isinstance(error, AccountError):
            return  # failures to reach the API are each member's own business
        with self._outbox_lock:
            self._outbox.append((origin, error))

    def _flush_outbox(self) -> None:
        with self._outbox_lock:
            outbox, self._outbox = self._outbox, []
        for origin, error in outbox:
            payload = json.dumps({"type": "stop", "member": self.member, "at": time.time(),
                                  "reason": error.reason, "message": error.message})

            def send(r: Any, message: str = payload) -> None:
                r.publish(self.channel, message)

            self._call(send)
            # this process's other jobs are members of the fleet too
            self._host.deliver_stop(origin, Reading(None, error, seq=self._next_seq(), remote_stop=True))

    # -- listener thread ----------------------------------------------------------------------
    def _listen(self) -> None:
        last_beat = 0.0
        last_lease = 0.0
        while not self._stopping.is_set():
            self._flush_outbox()
            pubsub = self._pubsub
            if pubsub is None or self._degraded:
                # retry quietly, at most every 5 s; stops still reach this process's jobs
                if self._stopping.wait(min(max(self.interval, 0.5), 5.0)):
                    break
                self._connect()
                continue
            try:
                msg = pubsub.get_message(timeout=0.1)  # short: the outbox is flushed between messages
            except Exception as exc:
                self._drop_connections()
                self._degrade(type(exc).__name__)
                continue
            now = time.time()
            if now - last_lease >= LEASE_HEARTBEAT:
                self._lease_beat()
                last_lease = now
            if now - last_beat > self._heartbeat_period():
                self._heartbeat()
                last_beat = now
            if msg and msg.get("type") == "message":
                try:
                    self._handle(msg.get("data"))
                except Exception:  # a malformed message must not end the listener
                    logger.debug("vastcap-guard: ignored a malformed fleet message", exc_info=True)
        self._flush_outbox()

    def _handle(self, raw: object) -> None:
        data = _decode(raw)
        if data is None or data.get("member") == self.member:
            return
        if data.get("type") == "bye":
            self._take_free_lease()  # its poller left gracefully: take over at once
        elif data.get("type") == "hello":
            interval = float(data["interval"])
            if interval > 0:
                self._set_fleet_interval(min(self._fleet_interval, interval))
        elif data.get("type") == "stop":
            err = error_for_reason(
                str(data.get("reason")),
                f"Another member of the fleet stopped: {data.get('message') or data.get('reason')}",
            )
            if isinstance(err, AccountError):
                self._host.receive(Reading(None, err, seq=self._next_seq(), remote_stop=True))
        elif data.get("type") == "reading":
            self._host.receive(self._reading_from(data))

    def _reading_from(self, data: dict[str, Any]) -> Reading:
        at = float(data["at"])
        mono = time.monotonic() - max(time.time() - at, 0.0)
        spent = _dec(data["spent"]) if data.get("spent") is not None else None
        if data.get("balance") is not None:
            balance = Decimal(str(data["balance"]))
            if not balance.is_finite():
                raise ValueError("balance is not finite")
            return Reading(balance, None, at=at, monotonic=mono, seq=self._next_seq(), fleet_spent=spent)
        err = error_for_reason(str(data.get("reason")), str(data.get("message") or data.get("reason")))
        return Reading(None, err, at=at, monotonic=mono, seq=self._next_seq())

    def close(self) -> None:
        self._stopping.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(3.0)

        def leave(r: Any) -> None:
            r.hdel(self.k_members, self.member)
            if r.eval(_RELEASE, 1, self.k_lease, self.member):
                r.publish(self.channel, json.dumps({"type": "bye", "member": self.member}))

        self._call(leave)
        self._drop_connections()


def _dec(value: object) -> Decimal:
    if isinstance(value, bytes):
        value = value.decode()
    try:
        d = Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return d if d.is_finite() else Decimal(0)


def _decode(raw: object) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _with(reading: Reading, **changes: Any) -> Reading:
    from dataclasses import replace

    return replace(reading, **changes)
