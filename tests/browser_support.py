"""Helpers the browser suites share (Playwright, Selenium, their fleet and reliability rows):
waiting for a condition, a balance drop once the script is busy, and a page that never loads.

Plain functions and classes, no fixtures: each suite wraps them in its own fixtures module."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def set_balance_when(event: threading.Event, sandbox: Any, key: str, balance: object) -> threading.Thread:
    """Set ``key``'s balance once ``event`` is set (the script is then busy), from another thread."""

    def run() -> None:
        if event.wait(30):
            sandbox.set_balance(key, balance)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class HangingPage:
    """Serves ``/hang``: headers and half a body, then nothing until released (load never fires)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reached = threading.Event()
        page = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/hang":
                    body = b"<html><body>ok</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    self.wfile.write(b"<html><body><p>loading")
                    self.wfile.flush()
                except OSError:
                    return
                page.reached.set()
                page.release.wait(60)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hang"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
