"""Notifications through Spidermon's own actions, as docs/operations.md shows them: a suite subclass
with ``SendDiscordMessageSpiderFinished`` and ``SPIDERMON_DISCORD_MESSAGE = MESSAGE_TEMPLATE``. The
webhook is a local HTTP server on 127.0.0.1 that records what Discord would have received.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("spidermon")
pytest.importorskip("jinja2")  # Spidermon's notification actions render Jinja templates

from scrapy_crawl import KEY, MASKED
from sm_support import BALANCE, STOP, run_spidermon_crawl, spidermon_settings

from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite
from vastcap_guard.spidermon import MESSAGE_TEMPLATE


class Webhook:
    """A Discord-like webhook on loopback: records each JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/1/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def discord_settings(sb: Sandbox, webhook: Webhook, **extra: Any) -> dict[str, Any]:
    return spidermon_settings(sb, close=["sm_discord.VastcapAlerts"], SPIDERMON_DISCORD_WEBHOOK_URL=webhook.url,
                              SPIDERMON_DISCORD_MESSAGE=MESSAGE_TEMPLATE, **extra)


def test_a_stopped_crawl_posts_what_happened_and_what_to_do(tmp_path: Path, webhook: Webhook) -> None:
    with Sandbox({KEY: "0"}) as sb, LocalSite(pages=10) as site:
        crawl, runs = run_spidermon_crawl(tmp_path, [{"url": site.url}],
                                          discord_settings(sb, webhook, VASTCAP_WARN_BALANCE=1))
    assert crawl.reason == "vastcap_low_balance"
    (run,) = runs
    assert run.steps["FAILED ACTIONS"].statuses == {"SendDiscordMessageSpiderFinished": "OK"}
    (body,) = webhook.bodies
    content = body["content"]
    assert KEY not in content
    lines = content.splitlines()
    assert lines[0] == "`follow0`: 2 monitor(s) failed"
    assert lines[1] == "```" and lines[-1] == "```"
    assert lines[2] == f"{STOP}: {run.message(STOP)}"
    assert lines[2].startswith(f"{STOP}: vastcap-guard stopped the crawl: vastcap_low_balance. Top up the VastCap "
                               "account, then run the crawl again.")
    assert lines[3] == f"{BALANCE}: {run.message(BALANCE)}"
    assert MASKED in content


def test_a_funded_crawl_posts_nothing(tmp_path: Path, webhook: Webhook) -> None:
    with Sandbox({KEY: "10"}) as sb, LocalSite(pages=10) as site:
        crawl, runs = run_spidermon_crawl(tmp_path, [{"url": site.url}],
                                          discord_settings(sb, webhook, VASTCAP_WARN_BALANCE=1))
    assert crawl.reason == "finished"
    (run,) = runs
    assert run.monitors.summary == "OK"
    assert webhook.bodies == []
