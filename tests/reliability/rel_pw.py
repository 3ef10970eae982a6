"""Playwright helpers for the reliability suite: the browser to launch, log checks, cleanup checks."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vastcap_guard.poller import active_pollers

SYSTEM_CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def launch_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``chromium.launch()``; skips the test when no Chromium exists."""
    if not os.path.exists(SYSTEM_CHROMIUM):
        pytest.skip(f"no Chromium at {SYSTEM_CHROMIUM} (apt-get install -y chromium)")
    return {"executable_path": SYSTEM_CHROMIUM, "args": list(ARGS), "headless": True}


def poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vastcap-guard-poller")]


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """The test leaves no poller thread and no Playwright hook behind."""
    from vastcap_guard.playwright import _hooks

    before = set(poller_threads())
    pollers = active_pollers()
    yield
    deadline = time.monotonic() + 10
    while [t for t in poller_threads() if t not in before] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t for t in poller_threads() if t not in before] == [], "a poller thread was left behind"
    assert active_pollers() <= pollers
    assert not _hooks.installed(), "Playwright hooks left installed"


def records_at(caplog: pytest.LogCaptureFixture, level: int, prefix: str = "vastcap_guard") -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith(prefix)]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with_exc = [f"{r.name}: {r.getMessage()[:200]}" for r in caplog.records if r.exc_info]
    assert with_exc == [], with_exc
    assert "Traceback" not in caplog.text
