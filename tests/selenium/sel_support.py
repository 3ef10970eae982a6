"""Helpers and fixtures for the Selenium adapter tests (real chromedriver and Chromium).

No ``conftest.py`` here (pytest would import it as the module ``conftest`` and other suites'
``from conftest import`` would find it): test modules import the fixtures they use with
``# noqa: F401``.

Which processes are this test's: another session on the machine may run Chromium too. Every test
puts a unique token in its environment (``monkeypatch.setenv``); chromedriver, the browser process
and crashpad inherit it (``/proc/PID/environ``). Chromium's helpers (zygote, renderers, GPU) get a
cleaned environment, but they stay in this process's session: a Chromium-like process of this
session that did not exist when the test started is this test's too. Zombies are dead and left out.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import HangingPage, set_balance_when, wait_until  # noqa: F401 - imported from here

from vastcap_guard.poller import active_pollers
from vastcap_guard.site import LocalSite

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
TOKEN_VAR = "VASTCAP_GUARD_TEST_TOKEN"
_NAMES = (b"chrom", b"headless_shell")

MISSING = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
needs_chrome = pytest.mark.skipif(
    bool(MISSING), reason=f"needs Debian's chromium and chromium-driver ({', '.join(MISSING)} missing): "
                          "apt-get install -y chromium chromium-driver",
)


def options() -> Any:
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ARGS:
        opts.add_argument(arg)
    return opts


def chrome() -> Any:
    """A local headless Chromium through Debian's chromedriver (Selenium Manager cannot download here)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options())


# -- processes -------------------------------------------------------------------------------------
def _chromium_like() -> dict[int, bytes]:
    """pid -> environ of live (not zombie) Chromium / chromedriver processes."""
    found: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                exe = f.read().split(b"\0", 1)[0].lower()
            if stat[stat.rindex(b")") + 2:].split()[0] == b"Z" or not any(n in exe for n in _NAMES):
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                found[int(entry)] = f.read()
        except OSError:
            continue
    return found


def _own_session() -> None:
    """Under pytest-xdist, put this worker in a session of its own (once): the workers share the
    session of the pytest that started them, and the browsers another worker starts (the
    Playwright tests) would otherwise count as this test's processes."""
    if os.environ.get("PYTEST_XDIST_WORKER") and os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except OSError:  # already a process group leader: it keeps the shared session
            pass


class Processes:
    """The Chromium and chromedriver processes one test started."""

    def __init__(self, token: str) -> None:
        self.token = f"{TOKEN_VAR}={token}".encode()
        _own_session()
        self.sid = os.getsid(0)
        self.before = set(_chromium_like())

    def live(self) -> list[int]:
        out = []
        for pid, environ in _chromium_like().items():
            try:
                same_session = os.getsid(pid) == self.sid
            except OSError:
                continue
            if self.token in environ or (same_session and pid not in self.before):
                out.append(pid)
        return sorted(out)

    def assert_gone(self, timeout: float = 15.0) -> None:
        """Nothing this test started is running any more (exit is asynchronous: wait a little)."""
        assert wait_until(lambda: not self.live(), timeout), f"processes left: {describe(self.live())}"


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ")[:80].decode(errors="replace")
            out.append(f"{pid} {cmdline}")
        except OSError:
            out.append(f"{pid} (gone)")
    return out





def stop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith(("vastcap-guard-poller", "vastcap-guard-selenium"))]


class RemoteEnd:
    """A chromedriver on a free loopback port, for ``webdriver.Remote``."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not wait_until(self.up, 20):
            self.close()
            raise RuntimeError("chromedriver did not come up")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/status", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def remote(self) -> Any:
        from selenium import webdriver

        return webdriver.Remote(command_executor=self.url, options=options())

    def close(self) -> None:
        # Service.stop()'s way: /shutdown closes the browsers of open sessions, then the process ends
        try:
            urllib.request.urlopen(f"{self.url}/shutdown", timeout=5).close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(name="procs")
def procs_fixture(monkeypatch: pytest.MonkeyPatch) -> Processes:
    """This test's processes: every child it starts inherits a unique token."""
    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, token)
    return Processes(token)


@pytest.fixture(name="nothing_left_behind", autouse=True)
def nothing_left_behind_fixture() -> Iterator[None]:
    """No poller or stopping thread, no hook and no instance gate outlive a test."""
    from selenium.webdriver.remote.webdriver import WebDriver

    from vastcap_guard.selenium import _guard

    original = WebDriver.__dict__["start_session"]
    before = set(stop_threads())
    pollers = active_pollers()
    yield

    def new_threads() -> list[threading.Thread]:
        return [t for t in stop_threads() if t not in before]

    assert wait_until(lambda: not new_threads(), timeout=10), f"threads left: {new_threads()}"
    assert active_pollers() <= pollers
    assert not _guard.HOOKS.installed(), "the start_session hook was left installed"
    assert WebDriver.__dict__["start_session"] is original


@pytest.fixture(name="site", scope="module")
def site_fixture() -> Iterator[LocalSite]:
    with LocalSite(pages=64) as s:
        yield s


@pytest.fixture(name="hanging")
def hanging_fixture() -> Iterator[HangingPage]:
    page = HangingPage()
    try:
        yield page
    finally:
        page.close()


@pytest.fixture(name="remote_end", scope="module")
def remote_end_fixture() -> Iterator[RemoteEnd]:
    if MISSING:
        pytest.skip(f"{', '.join(MISSING)} missing")
    end = RemoteEnd()
    try:
        yield end
    finally:
        end.close()
