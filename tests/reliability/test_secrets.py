"""The API key never shows: a crawl and Playwright sessions at DEBUG level with a distinctive key.

Searched: every captured log line (Scrapy's own DEBUG output, urllib3's, the guard's), the stats,
the signals' error messages and reprs, the guard objects' reprs and snapshots, the exceptions
raised (with their chained causes and formatted tracebacks), and the CLI's output.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.async_api import async_playwright
from playwright.sync_api import sync_playwright
from rel_pw import launch_kwargs, nothing_left_behind  # noqa: F401
from rel_support import KEY, MASKED, SECRET_CASES, Batches, guard_lines

from vastcap_guard import GuardError, LowBalanceError
from vastcap_guard.cli import main as cli_main
from vastcap_guard.playwright import PlaywrightGuard, guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

ECHO_BODY = json.loads(SECRET_CASES["secret-echoed-key"]["fault"]["body"])


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=32) as s:
        yield s


def everything(err: BaseException | None, g: PlaywrightGuard, caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [caplog.text, repr(g), repr(g.config), str(g.snapshot()), str(g.tripped), repr(g.tripped)]
    texts += [r.getMessage() for r in caplog.records]
    if err is not None:
        texts += ["".join(traceback.format_exception(err)), str(err), repr(err), str(err.__cause__),
                  repr(err.__cause__)]
    return texts


# -- Scrapy ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["secret-run-then-stop", "secret-preflight-502"])
@pytest.mark.parametrize("batch", ["misc"])
def test_crawl_at_debug_never_shows_the_key(batches: Batches, batch: str, case_id: str) -> None:
    case = batches.case(batch, case_id)
    log = "\n".join(case["log"])
    # the capture really covered Scrapy's, urllib3's and the guard's DEBUG output
    assert "[urllib3.connectionpool] DEBUG:" in log
    assert "[scrapy." in log and "] DEBUG:" in log
    assert "[vastcap_guard.client] DEBUG:" in log or case_id == "secret-run-then-stop"
    assert MASKED in log, "the guard should name the key, masked"
    assert case["stats"]["finish_reason"] in ("vastcap_low_balance", "vastcap_api_unavailable")
    assert case["stats"]["vastcap/checks"] >= 1
    tripped = [s for s in case["signals"] if s["signal"] == "guard_tripped"]
    assert tripped and tripped[0]["message"] and tripped[0]["repr"]
    assert MASKED in case["guard_repr"] and MASKED in case["config_repr"]
    # logs, stats, signal messages and reprs, guard and config reprs, snapshot: all of it
    assert KEY not in json.dumps(case)
    assert KEY not in batches.get(batch).stderr


# -- Playwright ------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.usefixtures("nothing_left_behind")
def test_sync_session_at_debug_never_shows_the_key(site: LocalSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kwargs = launch_kwargs()
    err: BaseException | None = None
    with Sandbox({KEY: "10"}) as sb:
        g = guard(KEY, api_url=sb.url, interval=0.3, timeout=0.5, warn_balance="5")
        try:
            with g, sync_playwright() as p:
                browser = p.chromium.launch(**kwargs)
                page = browser.new_page()
                page.goto(site.url)
                sb.set_balance(KEY, "4")  # below warn_balance: a WARNING line
                page.wait_for_timeout(800)
                sb.fault("getBalance", "status", status=502, times=3)  # one failed check
                page.wait_for_timeout(1500)
                sb.set_balance(KEY, 0)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    page.wait_for_timeout(50)
        except LowBalanceError as exc:
            err = exc
    assert isinstance(err, LowBalanceError)
    assert "urllib3" in caplog.text and "vastcap_guard.client" in caplog.text  # DEBUG really captured
    assert MASKED in repr(g)
    for text in everything(err, g, caplog):
        assert KEY not in text


@pytest.mark.browser
@pytest.mark.usefixtures("nothing_left_behind")
def test_async_session_at_debug_never_shows_the_key(site: LocalSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kwargs = launch_kwargs()
    caught: list[BaseException] = []
    with Sandbox({KEY: "10"}) as sb:
        g = guard(KEY, api_url=sb.url, interval=0.3, timeout=0.5)

        async def main() -> None:
            try:
                async with g, async_playwright() as p:
                    browser = await p.chromium.launch(**kwargs)
                    page = await browser.new_page()
                    await page.goto(site.url)
                    sb.set_balance(KEY, 0)
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        await page.wait_for_timeout(50)
            except GuardError as exc:
                caught.append(exc)

        asyncio.run(main())
    assert caught and isinstance(caught[0], LowBalanceError)
    assert "urllib3" in caplog.text
    for text in everything(caught[0], g, caplog):
        assert KEY not in text


# -- CLI -------------------------------------------------------------------------------------------
def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, key: str | None = KEY) -> tuple[int, str, str]:
    if key is not None:
        monkeypatch.setenv("VASTCAP_API_KEY", key)
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("balance", ["10", "0"])
def test_cli_never_shows_the_key(monkeypatch: pytest.MonkeyPatch, balance: str) -> None:
    with Sandbox({KEY: balance}) as sb:
        for argv in (["check"], ["check", "--json"], ["balance"], ["watch", "--count", "2", "--interval", "0.1"]):
            code, out, err = run_cli([*argv, "--api-url", sb.url], monkeypatch)
            assert code == (0 if balance == "10" else 10) or argv[0] == "balance"
            assert KEY not in out and KEY not in err


# -- an API that echoes the key back -------------------------------------------------------------------
@pytest.mark.parametrize("batch", ["misc"])
def test_echoed_key_is_not_shown_by_the_crawl(batches: Batches, batch: str) -> None:
    case = batches.case(batch, "secret-echoed-key")
    assert case["stats"]["finish_reason"] == "vastcap_invalid_key"
    assert len(guard_lines(case["log"], "ERROR")) == 1
    assert KEY not in json.dumps(case)


def test_echoed_key_is_not_shown_by_playwright(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caught: Any = None
    with Sandbox({KEY: "10"}) as sb:
        sb.fault("getBalance", "body", body=json.dumps(ECHO_BODY))
        g = guard(KEY, api_url=sb.url, interval=5, timeout=0.5)
        try:
            with g:
                pass
        except GuardError as exc:
            caught = exc
    assert caught is not None and caught.reason == "vastcap_invalid_key"
    for text in everything(caught, g, caplog):
        assert KEY not in text


def test_echoed_key_is_not_shown_by_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox({KEY: "10"}) as sb:
        sb.fault("getBalance", "body", body=json.dumps(ECHO_BODY))
        code, out, err = run_cli(["check", "--json", "--api-url", sb.url], monkeypatch)
    assert code == 11
    assert KEY not in out and KEY not in err


# -- an API URL that redirects elsewhere ----------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    """Records every request body; answers a balance (as a look-alike API would)."""

    bodies: list[bytes]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append(self.rfile.read(length))
        body = b'{"balance": 5}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.mark.usefixtures("nothing_left_behind")
def test_key_is_never_sent_to_a_redirect_target() -> None:
    bodies: list[bytes] = []
    elsewhere = _serve(type("Elsewhere", (_Recorder,), {"bodies": bodies}))
    target = f"http://localhost:{elsewhere.server_address[1]}/collect"  # another host for requests

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    api = _serve(Redirect)
    try:
        g = guard(KEY, api_url=f"http://127.0.0.1:{api.server_address[1]}/api/solver", interval=5, timeout=0.5)
        try:
            with g:
                pass
        except GuardError:
            pass  # refusing to follow is fine; sending the key elsewhere is not
    finally:
        api.shutdown()
        elsewhere.shutdown()
    assert not any(KEY.encode() in b for b in bodies), "the key was posted to the redirect target"
