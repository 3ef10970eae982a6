"""BalanceClient against the real sandbox: every documented outcome and every fault."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests
from core_keys import BAD_KEY, DISABLED_KEY, KEY

from vastcap_guard import (
    AccountDisabledError,
    ApiError,
    ApiUnavailableError,
    BalanceClient,
    ConfigError,
    GuardError,
    InvalidKeyError,
)
from vastcap_guard.sandbox import Sandbox


def client(sb: Sandbox, key: str = KEY, **kw: object) -> BalanceClient:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("backoff", 0.01)
    return BalanceClient(key, api_url=sb.url, **kw)  # type: ignore[arg-type]


def test_reads_exact_decimal(sandbox: Sandbox) -> None:
    sandbox.set_balance(KEY, "0.1")
    with client(sandbox) as c:
        balance = c.get_balance()
    assert balance == Decimal("0.1") and isinstance(balance, Decimal)
    assert sandbox.call_count("getBalance") == 1


@pytest.mark.parametrize(
    ("key", "error", "reason"),
    [
        (BAD_KEY, InvalidKeyError, "vastcap_invalid_key"),
        (DISABLED_KEY, AccountDisabledError, "vastcap_account_disabled"),
    ],
)
def test_account_errors_are_definitive_and_never_retried(sandbox: Sandbox, key: str, error: type, reason: str) -> None:
    with client(sandbox, key) as c, pytest.raises(error) as info:
        c.get_balance()
    assert info.value.reason == reason
    assert sandbox.call_count("getBalance") == 1
    assert key not in str(info.value) and key not in repr(info.value)


def test_error_object_with_http_status_is_still_definitive(sandbox: Sandbox) -> None:
    body = '{"error": {"errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST", "errorDescription": "x"}}'
    sandbox.fault("getBalance", "body", status=401, body=body)
    with client(sandbox) as c, pytest.raises(InvalidKeyError):
        c.get_balance()
    assert sandbox.call_count("getBalance") == 1


def test_unknown_error_code_keeps_code(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "body", body='{"error": {"errorId": 9, "errorCode": "ERROR_NEW_THING", "errorDescription": "new"}}')
    with client(sandbox) as c, pytest.raises(ApiError) as info:
        c.get_balance()
    assert info.value.code == "ERROR_NEW_THING" and info.value.description == "new"
    assert info.value.reason == "vastcap_api_error"
    assert sandbox.call_count("getBalance") == 1


FAULTS = [
    pytest.param("status", {"status": 500}, id="500"),
    pytest.param("status", {"status": 503}, id="503"),
    pytest.param("status", {"status": 429}, id="429"),
    pytest.param("html", {}, id="502-html"),
    pytest.param("malformed", {}, id="broken-json"),
    pytest.param("body", {"body": "{}"}, id="empty-object"),
    pytest.param("body", {"body": "[1, 2]"}, id="array"),
    pytest.param("body", {"body": '{"balance": "abc"}'}, id="balance-string"),
    pytest.param("body", {"body": '{"balance": "10.5"}'}, id="balance-numeric-string"),
    pytest.param("body", {"body": '{"balance": true}'}, id="balance-bool"),
    pytest.param("body", {"body": '{"balance": null}'}, id="balance-null"),
    pytest.param("body", {"body": '{"balance": NaN}'}, id="balance-nan"),
    pytest.param("body", {"body": '{"balance": Infinity}'}, id="balance-inf"),
    pytest.param("body", {"body": '{"balance": 1e999999999}'}, id="balance-overflow"),
    pytest.param("body", {"body": '{"error": "oops"}'}, id="error-not-object"),
    pytest.param("drop", {}, id="dropped-connection"),
    pytest.param("huge", {}, id="huge-body"),
    pytest.param("hang", {"delay": 3}, id="timeout"),
]


@pytest.mark.parametrize(("kind", "opts"), FAULTS)
def test_transient_faults_are_retried_then_unavailable(sandbox: Sandbox, kind: str, opts: dict[str, object]) -> None:
    sandbox.fault("getBalance", kind, **opts)  # type: ignore[arg-type]
    # a short timeout only where the fault is one (a hang): a 4 MiB body must not run out of
    # deadline on a loaded machine before the retry this test is about
    timeout = 0.5 if kind == "hang" else 3
    with client(sandbox, timeout=timeout, retries=2) as c, pytest.raises(ApiUnavailableError) as info:
        c.get_balance()
    assert info.value.reason == "vastcap_api_unavailable"
    assert "attempt" in str(info.value)
    assert 1 < sandbox.call_count("getBalance") <= 3
    assert KEY not in str(info.value)


@pytest.mark.parametrize(("kind", "opts"), FAULTS)
def test_one_transient_fault_is_absorbed_by_a_retry(sandbox: Sandbox, kind: str, opts: dict[str, object]) -> None:
    sandbox.fault("getBalance", kind, times=1, **opts)  # type: ignore[arg-type]
    with client(sandbox, timeout=0.5, retries=2) as c:
        assert c.get_balance() == Decimal("10.25")
    assert sandbox.call_count("getBalance") == 2


def test_negative_balance_is_a_reading(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "body", body='{"balance": -1.5}')
    with client(sandbox) as c:
        assert c.get_balance() == Decimal("-1.5")


def test_refused_connection() -> None:
    with Sandbox() as sb:
        url = sb.url
    with BalanceClient(KEY, api_url=url, timeout=0.5, backoff=0.01) as c, pytest.raises(ApiUnavailableError) as info:
        c.get_balance()
    assert "refused" in str(info.value)


def test_not_found_url_is_not_retried(sandbox: Sandbox) -> None:
    with BalanceClient(KEY, api_url=sandbox.base_url + "/wrong", timeout=1) as c, pytest.raises(ApiUnavailableError) as info:
        c.get_balance()
    assert "HTTP 404" in str(info.value)


def test_total_time_is_bounded(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "hang", delay=5)
    with client(sandbox, timeout=0.3, retries=10, total_timeout=0.8) as c, pytest.raises(ApiUnavailableError):
        c.get_balance()
    assert sandbox.call_count("getBalance") <= 3


def test_only_errors_from_the_documented_hierarchy(sandbox: Sandbox) -> None:
    """Whatever the API does, callers only ever see a GuardError or a Decimal."""
    for kind, opts in [(p.values[0], p.values[1]) for p in FAULTS]:
        sandbox.clear_faults()
        sandbox.fault("getBalance", kind, **opts)  # type: ignore[arg-type]
        with client(sandbox, timeout=0.3, retries=0) as c:
            try:
                c.get_balance()
            except GuardError:
                pass


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key(key: str | None) -> None:
    with pytest.raises(InvalidKeyError):
        BalanceClient(key, api_url="http://127.0.0.1:9/api")


@pytest.mark.parametrize("url", ["ftp://example", "not a url", "", "http://"])
def test_bad_url(url: str) -> None:
    with pytest.raises(ConfigError):
        BalanceClient(KEY, api_url=url)


def test_repr_masks_key() -> None:
    c = BalanceClient(KEY, api_url="http://127.0.0.1:9/api")
    assert KEY not in repr(c) and "…" in repr(c)


def test_uses_one_session(sandbox: Sandbox) -> None:
    session = requests.Session()
    calls = []
    real = session.post
    session.post = lambda *a, **k: calls.append(1) or real(*a, **k)  # type: ignore[method-assign]
    with BalanceClient(KEY, api_url=sandbox.url, session=session) as c:
        c.get_balance()
        c.get_balance()
    assert len(calls) == 2


def test_an_api_that_echoes_the_key_does_not_leak_it(sandbox: Sandbox) -> None:
    body = json.dumps({"error": {"errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST", "errorDescription": f"bad key {KEY}"}})
    sandbox.fault("getBalance", "body", body=body)
    with client(sandbox) as c, pytest.raises(InvalidKeyError) as info:
        c.get_balance()
    assert KEY not in str(info.value) and "…" in str(info.value)
    sandbox.clear_faults()
    sandbox.fault("getBalance", "body", body=json.dumps({"balance": KEY}))
    with client(sandbox, retries=0) as c, pytest.raises(ApiUnavailableError) as info2:
        c.get_balance()
    assert KEY not in str(info2.value)


def test_redirects_are_not_followed() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(307)
            self.send_header("Location", "http://localhost:9/elsewhere/getBalance")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/solver"
        with BalanceClient(KEY, api_url=url, timeout=1) as c, pytest.raises(ApiUnavailableError) as info:
            c.get_balance()
    finally:
        server.shutdown()
        server.server_close()
    assert "redirects to http://localhost:9" in str(info.value)
    assert seen == ["/api/solver/getBalance"]  # asked once, never followed


def test_absurd_precision_is_malformed(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "body", body='{"balance": 1e-999999}')
    with client(sandbox, retries=0) as c, pytest.raises(ApiUnavailableError) as info:
        c.get_balance()
    assert len(str(info.value)) < 300


def test_a_trickling_answer_cannot_hold_a_check_past_its_total_time() -> None:
    """The server sends a valid balance only after ~20 s of one byte every 0.5 s: the client must
    give up at its total time instead of returning that balance."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        try:
            for _ in range(40):
                if stop.wait(0.5):
                    break
                conn.sendall(b" ")
            conn.sendall(b'{"balance": 1}')
        except OSError:
            pass
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/api/solver"
    try:
        with BalanceClient(KEY, api_url=url, timeout=1.0, retries=0) as c, pytest.raises(ApiUnavailableError):
            c.get_balance()
    finally:
        stop.set()
        srv.close()


def test_redis_passwords_are_masked() -> None:
    from vastcap_guard import GuardConfig
    from vastcap_guard._secrets import safe_url

    assert "s3cret" not in safe_url("redis://h:6379/0?password=s3cret")
    assert "s3cret" not in safe_url("redis://user:s3cret@h:6379/0")
    cfg = GuardConfig.build(KEY, environ={}, shared_state="redis://h:6379/0?password=s3cret")
    assert "s3cret" not in repr(cfg)
