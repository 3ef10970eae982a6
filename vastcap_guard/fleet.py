"""Fleet mode: many processes on one VastCap account, coordinated through Redis.

Opt in with ``shared_state="redis://host:6379/0"`` (``VASTCAP_SHARED_STATE`` in Scrapy). Within each
process the shared poller still runs one thread per account; across processes:

- **one getBalance per interval for the fleet**: a short lease in Redis elects the poller; it
  publishes every reading (balance, time, fleet-wide spend) on a channel and the others use it. A
  member that hears nothing for 1.5 intervals tries to take the lease, so a poller that dies hands
  over when its lease runs out (``2 x interval + 3 x timeout``);
- **fleet-wide stops**: a member whose guard trips publishes the reason; every member stops with it
  within about a second, whatever its interval. A stop only reaches members already running, so a
  job started after a top-up is not stopped by yesterday's news;
- **fleet-wide spend**: ``max_spend`` counts what the account spent since the first live member
  started;
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
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._secrets import key_id
from .config import GuardConfig
from .errors import GuardError, error_for_reason
from .guard import Reading

__all__ = ["NAMESPACE", "FleetCoordinator", "safe_redis_url"]

logger = logging.getLogger("vastcap_guard.fleet")

NAMESPACE = "vastcap-guard"


def safe_redis_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


# Renew the lease only if we still hold it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class FleetCoordinator:
    """One process's membership in an account's fleet. Used by the shared poller; thread-safe.

    ``deliver(reading)`` is called (in this coordinator's listener thread) for readings published
    by the fleet's poller and for stops published by other members.
    """

    def __init__(self, config: GuardConfig, deliver: Callable[[Reading], None], next_seq: Callable[[], int]) -> None:
        assert config.shared_state
        self.url = config.shared_state
        self.interval = config.interval
        self.timeout = config.timeout
        self.member = uuid.uuid4().hex
        self.joined_at = time.time()
        self._deliver = deliver
        self._next_seq = next_seq
        ns = f"{NAMESPACE}:{key_id(config.api_key or '', config.api_url)}"
        self.k_lease = f"{ns}:lease"
        self.k_reading = f"{ns}:reading"
        self.k_spent = f"{ns}:spent_total"
        self.k_base = f"{ns}:spent_base"
        self.k_members = f"{ns}:members"
        self.channel = f"{ns}:events"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._degraded = False
        self._redis: Any = None
        self._pubsub: Any = None
        self.leading = False
        self.published = 0
        self._connect(first=True)
        self._thread = threading.Thread(target=self._listen, name="vastcap-guard-fleet", daemon=True)
        self._thread.start()

    # -- connection and degradation ----------------------------------------------------------
    @property
    def active(self) -> bool:
        """Redis answers: the fleet coordinates. False: this member polls on its own."""
        return not self._degraded and self._redis is not None

    def _connect(self, first: bool = False) -> bool:
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
            self._redis = self._pubsub = None
            self._degrade(f"{type(exc).__name__}")
            return False
        if self._degraded:
            logger.warning("vastcap-guard: shared state at %s is back; the fleet coordinates again.",
                           safe_redis_url(self.url))
        self._degraded = False
        return True

    def _degrade(self, why: str) -> None:
        if not self._degraded:
            logger.warning(
                "vastcap-guard: shared state at %s is unreachable (%s); this member polls VastCap on "
                "its own until it is back. The job goes on.", safe_redis_url(self.url), why,
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
            self._redis = None
            self._degrade(type(exc).__name__)
            return None

    # -- membership and spend -----------------------------------------------------------------
    def _ttl_ms(self) -> int:
        return int((2 * self.interval + 3 * self.timeout) * 1000)

    def _join(self) -> None:
        assert self._redis is not None
        r = self._redis
        now = time.time()
        stale = now - max(3 * self.interval + 3 * self.timeout, 30.0)
        members = {k.decode(): float(v) for k, v in r.hgetall(self.k_members).items()}
        alive = [m for m, seen in members.items() if seen >= stale and m != self.member]
        dead = [m for m, seen in members.items() if seen < stale]
        if dead:
            r.hdel(self.k_members, *dead)
        if not alive:
            # the fleet starts now: spend counts from here
            r.set(self.k_base, r.get(self.k_spent) or b"0")
        r.hset(self.k_members, self.member, now)

    def _heartbeat(self) -> None:
        self._call(lambda r: r.hset(self.k_members, self.member, time.time()))

    def _fleet_spent(self, r: Any, balance: Decimal) -> Decimal:
        """Add this reading's decrease to the fleet's total; return the spend since the fleet began."""
        last = _decode_reading(r.get(self.k_reading))
        total = _dec(r.get(self.k_spent))
        if last is not None and last.get("balance") is not None:
            prev = _dec(last["balance"])
            if balance < prev:
                total += prev - balance
                r.set(self.k_spent, str(total))
        return max(total - _dec(r.get(self.k_base)), Decimal(0))

    # -- leadership ---------------------------------------------------------------------------
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

    def shared_reading(self, max_age: float) -> Reading | None:
        """The fleet's latest reading if it is no older than ``max_age`` seconds."""
        data = _decode_reading(self._call(lambda r: r.get(self.k_reading)))
        if data is None:
            return None
        age = time.time() - float(data.get("at", 0))
        if age > max_age:
            return None
        return self._reading_from(data)

    def publish(self, reading: Reading) -> Reading:
        """Share a reading this member made; returns it with the fleet-wide spend attached."""
        if reading.balance is None and reading.error is None:
            return reading

        def do(r: Any) -> Reading:
            spent = self._fleet_spent(r, reading.balance) if reading.balance is not None else None
            data = {
                "type": "reading", "member": self.member, "at": reading.at,
                "balance": str(reading.balance) if reading.balance is not None else None,
                "reason": reading.error.reason if reading.error else None,
                "message": reading.error.message if reading.error else None,
                "spent": str(spent) if spent is not None else None,
            }
            payload = json.dumps(data)
            r.set(self.k_reading, payload, px=max(self._ttl_ms(), 60_000))
            r.publish(self.channel, payload)
            self.published += 1
            return _with(reading, fleet_spent=spent)

        out = self._call(do)
        return out if out is not None else reading

    def publish_stop(self, error: GuardError) -> None:
        payload = json.dumps({"type": "stop", "member": self.member, "at": time.time(),
                              "reason": error.reason, "message": error.message})
        self._call(lambda r: r.publish(self.channel, payload))

    # -- listener thread ----------------------------------------------------------------------
    def _listen(self) -> None:
        last_beat = 0.0
        while not self._stopping.is_set():
            pubsub = self._pubsub
            if pubsub is None or self._degraded:
                # retry quietly every interval (at most every 5 s)
                if self._stopping.wait(min(max(self.interval, 0.5), 5.0)):
                    break
                self._connect()
                continue
            try:
                msg = pubsub.get_message(timeout=0.2)
            except Exception as exc:
                self._pubsub = None
                self._redis = None
                self._degrade(type(exc).__name__)
                continue
            now = time.time()
            if now - last_beat > max(self.interval, 1.0):
                self._heartbeat()
                last_beat = now
            if not msg or msg.get("type") != "message":
                continue
            data = _decode_reading(msg.get("data"))
            if data is None or data.get("member") == self.member:
                continue
            if data.get("type") == "stop":
                if float(data.get("at", 0)) < self.joined_at:
                    continue
                err = error_for_reason(
                    str(data.get("reason")),
                    f"Another member of the fleet stopped: {data.get('message') or data.get('reason')}",
                )
                self._deliver(Reading(None, err, seq=self._next_seq(), remote_stop=True))
            elif data.get("type") == "reading":
                self._deliver(self._reading_from(data))

    def _reading_from(self, data: dict[str, Any]) -> Reading:
        at = float(data.get("at", time.time()))
        mono = time.monotonic() - max(time.time() - at, 0.0)
        spent = _dec(data["spent"]) if data.get("spent") is not None else None
        if data.get("balance") is not None:
            return Reading(_dec(data["balance"]), None, at=at, monotonic=mono, seq=self._next_seq(),
                           fleet_spent=spent)
        err = error_for_reason(str(data.get("reason")), str(data.get("message") or data.get("reason")))
        return Reading(None, err, at=at, monotonic=mono, seq=self._next_seq())

    def close(self) -> None:
        self._stopping.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(2.0)

        def leave(r: Any) -> None:
            r.hdel(self.k_members, self.member)
            r.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                   1, self.k_lease, self.member)

        self._call(leave)
        for obj in (self._pubsub, self._redis):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: S110 - closing a dead connection
                pass


def _dec(value: object) -> Decimal:
    if isinstance(value, bytes):
        value = value.decode()
    try:
        d = Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return d if d.is_finite() else Decimal(0)


def _decode_reading(raw: object) -> dict[str, Any] | None:
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
