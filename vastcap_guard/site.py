"""A small local website for demos, tests and benchmarks: linked pages, some with a captcha.

>>> with LocalSite(pages=200, captcha_every=10) as site:   # doctest: +SKIP
...     site.url            # http://127.0.0.1:PORT/
...     site.request_count  # how many requests reached the site

Page ``/page/N`` links to pages ``2N+1`` and ``2N+2`` (so a crawl from ``/`` reaches every page) and,
when ``N % captcha_every == 0``, carries a reCAPTCHA widget (``data-sitekey``) that a spider solves
through the VastCap API. Every request is logged with its time, so tests can prove that no request
reached the site.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from ._server import ClosingAwareHandler, LoopbackServer

__all__ = ["SITE_KEY", "LocalSite", "SiteRequest"]

SITE_KEY = "6Lc-demo-site-key-vastcap-guard"


@dataclass(frozen=True)
class SiteRequest:
    path: str
    at: float
    monotonic: float


class LocalSite(LoopbackServer):
    """Serve ``pages`` linked pages on 127.0.0.1. Start it, or use ``with``."""

    _thread_name = "vastcap-local-site"

    def __init__(self, pages: int = 100, *, captcha_every: int = 0, delay: float = 0.0, port: int = 0) -> None:
        self.pages = int(pages)
        self.captcha_every = int(captcha_every)
        self.delay = float(delay)
        super().__init__("127.0.0.1", port)
        self._lock = threading.Lock()
        self._requests: list[SiteRequest] = []

    def _handler(self) -> type[ClosingAwareHandler]:
        return type("_SiteHandler", (_SiteHandler,), {"site": self})

    @property
    def url(self) -> str:
        return f"{self.base_url}/"

    def page_url(self, n: int) -> str:
        return f"{self.url}page/{n}"

    @property
    def requests(self) -> list[SiteRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def has_captcha(self, n: int) -> bool:
        return self.captcha_every > 0 and n % self.captcha_every == 0

    def render(self, path: str) -> tuple[int, str]:
        if path in ("", "/"):
            return 200, _html("Demo site", '<a href="/page/0">start</a>')
        if path.startswith("/page/"):
            try:
                n = int(path[len("/page/"):])
            except ValueError:
                return 404, _html("Not found", "")
            if not 0 <= n < self.pages:
                return 404, _html("Not found", "")
            links = "".join(f'<a href="/page/{c}">page {c}</a> ' for c in (2 * n + 1, 2 * n + 2) if c < self.pages)
            captcha = (f'<div class="g-recaptcha" data-sitekey="{SITE_KEY}"></div>' if self.has_captcha(n) else "")
            return 200, _html(f"Page {n}", f'<p class="n">{n}</p>{captcha}{links}')
        return 404, _html("Not found", "")


def _html(title: str, body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>"


class _SiteHandler(ClosingAwareHandler):
    site: LocalSite
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        site = self.site
        with site._lock:
            site._requests.append(SiteRequest(self.path, time.time(), time.monotonic()))
        if site.delay:
            time.sleep(site.delay)
        status, html = site.render(self.path.split("?", 1)[0])
        self.send_body(status, html.encode(), "text/html; charset=utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m vastcap_guard.site [--port 8788] [--pages 500] [--captcha-every 5]``: serve the site."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m vastcap_guard.site",
                                description="Serve a local site of linked pages on 127.0.0.1 (Ctrl-C stops it).")
    p.add_argument("--port", type=int, default=8788, help="port on 127.0.0.1 (default 8788; 0 picks one)")
    p.add_argument("--pages", type=int, default=500, help="number of pages (default 500)")
    p.add_argument("--captcha-every", type=int, default=0, metavar="K",
                   help="a reCAPTCHA widget on page N when N %% K == 0 (default: none)")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer (default 0)")
    args = p.parse_args(argv)
    try:
        site = LocalSite(args.pages, captcha_every=args.captcha_every, delay=args.delay, port=args.port).start()
    except OSError as exc:
        print(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"local site on {site.url} ({args.pages} pages); Ctrl-C to stop", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        site.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
