"""A threaded HTTP server on loopback, started and stopped with the object that owns it.

Shared by the sandbox and the local site so both start, stop and report their port the same way.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = ["ClosingAwareHandler", "LoopbackServer"]

S = TypeVar("S", bound="LoopbackServer")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return  # a client (a browser being closed, a timed-out poll) hung up mid-request
        super().handle_error(request, client_address)


class _QuietServer6(_QuietServer):
    address_family = socket.AF_INET6


class ClosingAwareHandler(BaseHTTPRequestHandler):
    """A handler that answers nothing once its server is stopping, also on kept-alive connections
    (``shutdown()`` only stops accepting new ones), so a stopped server looks stopped."""

    owner: LoopbackServer

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        """A complete answer with a Content-Length (the connection may be kept alive)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away

    def parse_request(self) -> bool:
        # called once a request line has arrived: a kept-alive connection may wait here for long
        if self.owner._closing.is_set():
            self.close_connection = True
            return False
        return super().parse_request()


class LoopbackServer:
    """Base for objects that serve HTTP on loopback in a daemon thread (``with`` starts and stops)."""

    _thread_name = "vastcap-http"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def _handler(self) -> type[ClosingAwareHandler]:
        raise NotImplementedError

    def start(self: S) -> S:
        if self._server is None:
            self._closing.clear()
            handler = self._handler()
            handler.owner = self
            server_class = _QuietServer6 if ":" in self._host else _QuietServer  # ::1 is IPv6
            self._server = server_class((self._host, self._port), handler)
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=self._thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()  # wakes handlers that wait (latency and hang faults)
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = {"::1": "[::1]", "localhost": "127.0.0.1"}.get(self._host, self._host)
        return f"http://{host}:{self.port}"
