"""The VastCap balance client: one ``requests.Session``, bounded retries, exact Decimals."""

from __future__ import annotations

import logging
import random
import threading
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from ._parse import MAX_BODY_BYTES, MalformedResponse, parse_balance_response
from ._secrets import mask_key, safe_url
from .config import DEFAULT_API_URL, MAX_TIMEOUT, check_api_url, clean_key
from .errors import ApiUnavailableError, ConfigError, InvalidKeyError

__all__ = ["DEFAULT_API_URL", "BalanceClient"]

logger = logging.getLogger("vastcap_guard.client")

_USER_AGENT = "vastcap-guard"
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))



class BalanceClient:
    """Reads a VastCap account's balance.

    ``timeout`` bounds one HTTP attempt. Transient failures (connection errors, timeouts,
    HTTP 5xx and 429, a body that is not the documented JSON) are retried up to ``retries``
    times with exponential backoff and full jitter, and never beyond ``total_timeout`` seconds
    (default: three times ``timeout``). An ``error`` object from the API is a definitive answer and
    is raised at once as the matching :class:`~vastcap_guard.GuardError`.

    The client is thread-safe for :meth:`get_balance`; close it (or use it as a context manager)
    to release its connections.
    """

    def __init__(
        self,
        api_key: str | None,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.25,
        max_backoff: float = 2.0,
        total_timeout: float | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not api_key or not isinstance(api_key, str) or not api_key.strip():
            raise InvalidKeyError(
                "No VastCap API key is configured. Set VASTCAP_API_KEY (or pass api_key)."
            )
        self._api_key = clean_key(api_key)
        self.api_url = check_api_url(api_url)
        if not _positive(timeout) or float(timeout) > MAX_TIMEOUT:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}.", setting="timeout")
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be a whole number >= 0, got {retries!r}.", setting="retries")
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.total_timeout = float(total_timeout) if total_timeout is not None else 3 * self.timeout
        self._session = session or requests.Session()
        self._session.headers.setdefault("User-Agent", _USER_AGENT)
        self._lock = threading.Lock()  # requests.Session is not documented as thread-safe

    @property
    def masked_key(self) -> str:
        return mask_key(self._api_key)

    def __repr__(self) -> str:
        return f"BalanceClient(api_key={self.masked_key!r}, api_url={safe_url(self.api_url)!r})"

    def __enter__(self) -> BalanceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def get_balance(self) -> Decimal:
        """Return the balance in USD, or raise a :class:`~vastcap_guard.GuardError`."""
        deadline = time.monotonic() + self.total_timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                return self._attempt(min(self.timeout, max(remaining, 0.001)), deadline)
            except _Transient as exc:
                problem = str(exc)
            attempt += 1
            delay = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            if attempt > self.retries or time.monotonic() + delay >= deadline:
                raise ApiUnavailableError(
                    f"VastCap's getBalance could not be read after {attempt} attempt(s) "
                    f"({problem}). Check the network and the API URL {safe_url(self.api_url)}."
                ) from None
            logger.debug("getBalance attempt %d failed (%s); retrying in %.2fs", attempt, problem, delay)
            time.sleep(delay)

    def _attempt(self, timeout: float, deadline: float) -> Decimal:
        url = f"{self.api_url}/getBalance"
        with self._lock:
            try:
                # never follow a redirect: it would re-send the key to wherever it points
                resp = self._session.post(
                    url, json={"clientKey": self._api_key}, timeout=timeout, stream=True,
                    allow_redirects=False,
                )
                try:
                    body = _read_limited(resp, deadline)
                finally:
                    resp.close()
            except (requests.Timeout, urllib3.exceptions.TimeoutError):
                raise _Transient(f"no answer within {timeout:.3g}s") from None
            except requests.RequestException as exc:
                raise _Transient(_describe_request_error(exc)) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # raised while reading the body
                raise _Transient(f"the connection failed while reading the answer ({type(exc).__name__})") from None
        if 300 <= resp.status_code < 400:
            where = urlsplit(resp.headers.get("Location", ""))
            target = f" to {where.scheme}://{where.netloc}" if where.netloc else ""
            raise ApiUnavailableError(
                f"VastCap's API URL {safe_url(self.api_url)} redirects{target} (HTTP {resp.status_code}); the key "
                "was not sent there. Set the API URL to the final address."
            )
        try:
            return parse_balance_response(resp.status_code, body, self._api_key)
        except MalformedResponse as exc:
            if resp.status_code < 400 or resp.status_code in _RETRY_STATUSES:
                raise _Transient(str(exc)) from None
            # any other 4xx without an error object: the URL or the request is wrong
            raise ApiUnavailableError(
                f"VastCap's getBalance answered HTTP {resp.status_code} at {safe_url(url)} ({exc}). "
                "Check the API URL."
            ) from None


class _Transient(Exception):
    pass


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0 and float(value) != float("inf")
    except (TypeError, ValueError):
        return False


def _read_limited(resp: requests.Response, deadline: float) -> bytes:
    """The body, at most a little over MAX_BODY_BYTES, read before ``deadline`` (a server that
    trickles bytes cannot hold a check past the client's total time)."""
    chunks: list[bytes] = []
    size = 0
    read1 = getattr(resp.raw, "read1", None)  # urllib3 2: returns what has arrived, up to amt
    while True:
        if read1 is not None:
            chunk = read1(16384, decode_content=True)
        else:  # pragma: no cover - urllib3 1.x
            chunk = resp.raw.read(1, decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
        if time.monotonic() > deadline:
            raise requests.Timeout("the answer took longer than the total time allowed")
    return b"".join(chunks)


def _describe_request_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "refused" in text.lower():
            return "connection refused"
        if "reset" in text.lower() or "aborted" in text.lower() or "RemoteDisconnected" in text:
            return "connection dropped"
        return "connection failed"
    return type(exc).__name__
