"""A local, faithful VastCap API for offline development and tests.

>>> from vastcap_guard.sandbox import Sandbox
>>> with Sandbox({"vc_demo_key_123456": "10.25"}, price="0.002") as sb:   # doctest: +SKIP
...     sb.url          # http://127.0.0.1:PORT/api/solver
...     sb.set_balance("vc_demo_key_123456", 0)
...     sb.fault("getBalance", "status", status=502, times=1)

It serves ``getBalance``, ``createTask`` and ``getTaskResult`` exactly as documented, debits
``price`` for every solved task, injects faults per method, and logs every call. Only loopback
addresses are served. A small control API under ``/_sandbox/`` lets other processes (a crawl, a
benchmark, the CLI) change balances and faults.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ._secrets import mask_key
from ._server import ClosingAwareHandler, LoopbackServer

__all__ = ["DEFAULT_URL", "METHODS", "Call", "Fault", "FaultKind", "Sandbox", "SandboxClient", "SandboxError"]

logger = logging.getLogger("vastcap_guard.sandbox")

#: the account a sandbox made without ``accounts`` holds (balance $10)
DEFAULT_KEY = "vc_sandbox_0000000000000000"

#: where the API is served, as on the real host
API_PATH = "/api/solver"

#: the port ``vastcap-guard sandbox`` serves on unless told otherwise
DEFAULT_PORT = 8787
#: the API URL of ``vastcap-guard sandbox`` with its defaults
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}{API_PATH}"

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

METHODS = ("getBalance", "createTask", "getTaskResult")
FaultKind = Literal["latency", "status", "html", "malformed", "drop", "body", "hang", "huge"]
FAULT_KINDS: tuple[str, ...] = ("latency", "status", "html", "malformed", "drop", "body", "hang", "huge")


@dataclass
class Fault:
    """A misbehaviour of one method.

    - ``latency``: answer normally after ``delay`` seconds;
    - ``status``: answer HTTP ``status`` with ``body`` (default: a short text);
    - ``html``: HTTP ``status`` (default 502) with an HTML error page;
    - ``malformed``: HTTP 200 with broken JSON;
    - ``body``: HTTP ``status`` (default 200) with exactly ``body`` (``"{}"``, ``'{"balance": true}'``...);
    - ``drop``: close the connection without answering;
    - ``hang``: answer nothing for ``delay`` seconds (default 30), then close;
    - ``huge``: HTTP 200 with a body of ``size`` bytes (default 4 MiB).

    ``times`` limits the fault to the next N calls; ``every=2`` makes every second call fail
    (the 1st, 3rd, 5th... with ``offset=0``).
    """

    kind: FaultKind
    status: int | None = None
    body: str | bytes | None = None
    delay: float = 0.0
    size: int = 4 * 1024 * 1024
    times: int | None = None
    every: int | None = None
    offset: int = 0
    _seen: int = field(default=0, repr=False)

    def applies(self) -> bool:
        """Count one call; True when this call gets the fault."""
        n = self._seen
        self._seen += 1
        if self.every:
            if (n - self.offset) % self.every != 0:
                return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        return True


@dataclass(frozen=True)
class Call:
    method: str
    at: float
    monotonic: float
    key: str  # masked
    fault: str | None


@dataclass
class _Account:
    balance: Decimal
    disabled: bool = False


@dataclass
class _Task:
    key: str
    type: str
    created: float
    #: set when the task is solved (and paid for); asking again returns the same solution
    solution: dict[str, str] | None = None

    @property
    def done(self) -> bool:
        return self.solution is not None


def _money(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


class Sandbox(LoopbackServer):
    """The VastCap API on ``http://127.0.0.1:<port>/api/solver``. Start it, or use ``with``."""

    _thread_name = "vastcap-sandbox"

    def __init__(
        self,
        accounts: Mapping[str, object] | None = None,
        *,
        disabled: Iterable[str] = (),
        price: object = "0.002",
        solve_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError("the sandbox serves loopback only (127.0.0.1, localhost or ::1)")
        self._lock = threading.RLock()
        if accounts is None:
            accounts = {DEFAULT_KEY: "10"}
        self._accounts: dict[str, _Account] = {k: _Account(_money(v)) for k, v in accounts.items()}
        #: the first account's key (``DEFAULT_KEY`` when no accounts were given)
        self.key: str | None = next(iter(self._accounts), None)
        for key in disabled:
            self._accounts.setdefault(key, _Account(Decimal(0))).disabled = True
        self.price = _money(price)
        self.solve_delay = float(solve_delay)
        self._faults: dict[str, list[Fault]] = {}
        self._calls: list[Call] = []
        self._tasks: dict[str, _Task] = {}
        super().__init__(host, port)

    def _handler(self) -> type[ClosingAwareHandler]:
        return type("_Handler", (_Handler,), {"sandbox": self})

    @property
    def url(self) -> str:
        """The API URL to give the guard (``VASTCAP_API_URL`` / ``api_url=``)."""
        return f"{self.base_url}{API_PATH}"

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self.running else "stopped"
        return f"Sandbox({state}, accounts={len(self._accounts)})"

    # -- accounts ------------------------------------------------------------------------------
    def add_account(self, key: str, balance: object = "10", *, disabled: bool = False) -> None:
        with self._lock:
            self._accounts[key] = _Account(_money(balance), disabled)

    def set_balance(self, key: str, balance: object) -> None:
        with self._lock:
            self._accounts.setdefault(key, _Account(Decimal(0))).balance = _money(balance)

    def top_up(self, key: str, amount: object) -> Decimal:
        """Add ``amount`` to an account's balance in one step (a charge landing at the same moment
        is kept, as it would not be by ``set_balance(key, balance(key) + amount)``); returns the
        new balance."""
        with self._lock:
            account = self._accounts.setdefault(key, _Account(Decimal(0)))
            account.balance += _money(amount)
            return account.balance

    def balance(self, key: str) -> Decimal:
        with self._lock:
            return self._accounts[key].balance

    def disable(self, key: str, disabled: bool = True) -> None:
        with self._lock:
            self._accounts.setdefault(key, _Account(Decimal(0))).disabled = disabled

    def remove_account(self, key: str) -> None:
        with self._lock:
            self._accounts.pop(key, None)

    # -- faults --------------------------------------------------------------------------------
    def fault(self, method: str, kind: FaultKind, **options: Any) -> Fault:
        """Inject a fault into ``method`` (see :class:`Fault`); returns it. Newest applies first."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        f = Fault(kind, **options)
        with self._lock:
            self._faults.setdefault(method, []).insert(0, f)
        return f

    def clear_faults(self, method: str | None = None) -> None:
        with self._lock:
            if method is None:
                self._faults.clear()
            else:
                self._faults.pop(method, None)

    def _pick_fault(self, method: str) -> Fault | None:
        with self._lock:
            for f in self._faults.get(method, []):
                if f.applies():
                    return f
        return None

    # -- call log ------------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def call_count(self, method: str | None = None) -> int:
        return len(self.calls(method))

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def _log(self, method: str, key: object, fault: Fault | None) -> None:
        with self._lock:
            self._calls.append(Call(method, time.time(), time.monotonic(),
                                    mask_key(key if isinstance(key, str) else None),
                                    fault.kind if fault else None))

    # -- the API -------------------------------------------------------------------------------
    def _account_error(self, key: object) -> dict[str, Any] | None:
        acct = self._accounts.get(key) if isinstance(key, str) else None
        if acct is None:
            return _error(1, "ERROR_KEY_DOES_NOT_EXIST", "Invalid API key")
        if acct.disabled:
            return _error(2, "ERROR_ACCOUNT_DISABLED", "The account is disabled")
        return None

    def handle(self, method: str, payload: Any) -> dict[str, Any]:
        """Answer one API call (JSON in, JSON out), as the real service would."""
        if not isinstance(payload, dict):
            return _error(10, "ERROR_VALIDATION_FAILED", "Request body must be a JSON object")
        key = payload.get("clientKey")
        with self._lock:
            err = self._account_error(key)
            if err or not isinstance(key, str):
                return err or _error(1, "ERROR_KEY_DOES_NOT_EXIST", "Invalid API key")
            acct = self._accounts[key]
            if method == "getBalance":
                return {"balance": float(acct.balance)}
            if method == "createTask":
                task = payload.get("task")
                if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                    return _error(10, "ERROR_VALIDATION_FAILED", "task.type is required")
                if acct.balance < self.price:
                    return _error(3, "ERROR_INSUFFICIENT_BALANCE", "Insufficient balance")
                task_id = str(uuid.uuid4())
                self._tasks[task_id] = _Task(key, task["type"], time.monotonic())
                return {"taskId": task_id}
            if method == "getTaskResult":
                wanted = payload.get("taskId")
                t = self._tasks.get(wanted) if isinstance(wanted, str) else None
                if t is None or t.key != key:
                    return _error(16, "ERROR_TASK_NOT_FOUND", "Task not found")
                if not t.done and time.monotonic() - t.created < self.solve_delay:
                    return {"status": "processing"}
                if t.solution is None:
                    if acct.balance < self.price:
                        return {"status": "error", "error": _error(3, "ERROR_INSUFFICIENT_BALANCE",
                                                                    "Insufficient balance")["error"]}
                    acct.balance -= self.price
                    t.solution = _solution(t.type)
                return {"status": "ready", "solution": dict(t.solution)}
        return _error(10, "ERROR_VALIDATION_FAILED", f"Unknown method {method}")  # pragma: no cover


def _error(error_id: int, code: str, description: str) -> dict[str, Any]:
    return {"error": {"errorId": error_id, "errorCode": code, "errorDescription": description}}


def _solution(task_type: str) -> dict[str, str]:
    token = uuid.uuid4().hex
    t = task_type.lower()
    if "recaptcha" in t:
        return {"gRecaptchaResponse": f"03A{token}"}
    if "image" in t:
        return {"text": token[:6]}
    return {"token": f"P1_{token}"}


class _Handler(ClosingAwareHandler):
    sandbox: Sandbox
    protocol_version = "HTTP/1.1"
    server_version = "VastCapSandbox/1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_body(status, body, content_type)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, 1 << 20)) if length > 0 else b""

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/_sandbox/calls":
            self._json(200, [c.__dict__ for c in self.sandbox.calls()])
        elif self.path.rstrip("/") == "/_sandbox/health":
            self._json(200, {"ok": True})
        else:
            self._json(404, {"detail": "not found"})

    def do_POST(self) -> None:
        raw = self._read_body()
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.startswith("/_sandbox/"):
            return self._control(path[len("/_sandbox/"):], raw)
        prefix, _, method = path.rpartition("/")
        if prefix != API_PATH or method not in METHODS:
            return self._json(404, {"detail": "not found"})
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            payload = None
        sb = self.sandbox
        fault = sb._pick_fault(method)
        sb._log(method, payload.get("clientKey") if isinstance(payload, dict) else None, fault)
        if fault is not None and self._apply_fault(fault):
            return
        self._json(200, sb.handle(method, payload))

    def _apply_fault(self, f: Fault) -> bool:
        """Serve the fault; False when the normal answer should follow (latency)."""
        closing = self.sandbox._closing
        if f.kind == "latency":
            closing.wait(f.delay)
            return False
        self.close_connection = True
        if f.kind == "hang":
            closing.wait(f.delay or 30.0)
            return True
        if f.kind == "drop":
            return True
        if f.kind == "status":
            body = f.body if f.body is not None else f"HTTP {f.status or 500}"
            self._send(f.status or 500, body.encode() if isinstance(body, str) else body, "text/plain")
        elif f.kind == "html":
            page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
            self._send(f.status or 502, page.encode(), "text/html")
        elif f.kind == "malformed":
            self._send(f.status or 200, b'{"balance": 10.25', "application/json")
        elif f.kind == "body":
            body = f.body if f.body is not None else b"{}"
            self._send(f.status or 200, body.encode() if isinstance(body, str) else body)
        elif f.kind == "huge":
            self._send(f.status or 200, b'{"balance": 1' + b"0" * max(f.size, 16) + b"}")
        return True

    def _control(self, action: str, raw: bytes) -> None:
        sb = self.sandbox
        try:
            data = json.loads(raw or b"{}")
            if action == "account":
                key = data["clientKey"]
                if "balance" in data:
                    sb.set_balance(key, data["balance"])
                if "disabled" in data:
                    sb.disable(key, bool(data["disabled"]))
            elif action == "fault":
                opts = {k: v for k, v in data.items() if k not in {"method", "kind"}}
                sb.fault(data["method"], data["kind"], **opts)
            elif action == "clear_faults":
                sb.clear_faults(data.get("method"))
            elif action == "reset_calls":
                sb.reset_calls()
            else:
                return self._json(404, {"detail": f"unknown control {action}"})
        except (ValueError, KeyError, TypeError) as exc:
            return self._json(400, {"detail": str(exc)})
        self._json(200, {"ok": True})


class SandboxError(Exception):
    """A :class:`SandboxClient` request failed: no sandbox answered (``refused`` is False), or the
    sandbox refused the request (``refused`` is True: a bad value)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class SandboxClient:
    """Control a sandbox that runs in another process (``vastcap-guard sandbox``, a test's
    :class:`Sandbox`) through its control API under ``/_sandbox/``.

    >>> sb = SandboxClient("http://127.0.0.1:8787/api/solver")       # doctest: +SKIP
    >>> sb.set_balance("vc_demo_key_000001", "0.5")
    >>> sb.fault("getBalance", "html", times=2)
    >>> len(sb.calls("getBalance"))

    ``url`` is the sandbox's API URL (or its base URL); only loopback addresses are accepted, so
    a ``VASTCAP_API_URL`` that points at the real API is refused (``ValueError``) before any
    request. Requests that fail raise :class:`SandboxError`.
    """

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 5.0) -> None:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ValueError(f"{url!r} is not a URL") from None
        if parts.scheme != "http" or host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"{url!r} is not a local sandbox: a sandbox serves http:// on loopback only "
                "(127.0.0.1, localhost or ::1)"
            )
        self.base_url = f"http://{'[' + host + ']' if ':' in host else host}:{port or 80}"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SandboxClient({self.base_url!r})"

    def _request(self, verb: str, action: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        url = f"{self.base_url}/_sandbox/{action}"
        with requests.Session() as session:
            session.trust_env = False  # no proxy from the environment: this is loopback
            try:
                r = session.request(verb, url, json=body, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise SandboxError(f"no sandbox answers at {self.base_url} ({type(exc).__name__})") from None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code == 400 and isinstance(data, dict):
            raise SandboxError(f"the sandbox refused: {data.get('detail')}", refused=True)
        if r.status_code != 200 or data is None:
            raise SandboxError(f"{self.base_url} is not a vastcap-guard sandbox (HTTP {r.status_code} "
                               f"on /_sandbox/{action})")
        return data

    def health(self) -> bool:
        """True when a sandbox answers (``False`` instead of :class:`SandboxError`)."""
        try:
            return bool(self._request("GET", "health").get("ok"))
        except (SandboxError, AttributeError):
            return False

    def set_balance(self, key: str, balance: object) -> None:
        """Set an account's balance (USD); an unknown key becomes a new account."""
        self._request("POST", "account", {"clientKey": key, "balance": str(_money(balance))})

    def disable(self, key: str, disabled: bool = True) -> None:
        """Disable (or enable again) an account; an unknown key becomes a new account with $0."""
        self._request("POST", "account", {"clientKey": key, "disabled": disabled})

    def fault(self, method: str, kind: FaultKind, **options: Any) -> None:
        """Inject a fault, as :meth:`Sandbox.fault` (options: status, body, delay, size, times,
        every, offset)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        self._request("POST", "fault", {"method": method, "kind": kind, **options})

    def clear_faults(self, method: str | None = None) -> None:
        self._request("POST", "clear_faults", {"method": method} if method else {})

    def calls(self, method: str | None = None) -> list[Call]:
        """The call log (keys masked, as the sandbox logs them), oldest first."""
        return [Call(**c) for c in self._request("GET", "calls") if method is None or c["method"] == method]

    def reset_calls(self) -> None:
        self._request("POST", "reset_calls")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a server that must be down)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedis:
    """A throwaway ``redis-server`` on loopback, for testing fleet mode offline.

    >>> with LocalRedis() as redis:                     # doctest: +SKIP
    ...     guard(shared_state=redis.url)              # redis://127.0.0.1:PORT/0

    Nothing is persisted. ``kill()`` stops it abruptly (to test the Redis-down fallback).
    Raises ``RuntimeError`` when ``redis-server`` is not installed or does not start.
    """

    def __init__(self, directory: str | None = None, executable: str | None = None) -> None:
        import shutil

        self.executable = executable or shutil.which("redis-server")
        self.directory = directory
        self.port = 0
        self._proc: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedis:
        import socket
        import subprocess
        import tempfile

        if self.executable is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        directory = self.directory or tempfile.gettempdir()
        self._proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.kill()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
