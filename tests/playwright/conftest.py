"""Fixtures for the Playwright adapter tests: a real headless Chromium, local pages, process checks.

The browser: a Playwright-managed Chromium when one is installed, else Debian's
``/usr/bin/chromium`` (Playwright's download is not reachable here). The tests skip, saying why,
only when neither exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pw_support import HangingPage, find_browser, guard_threads, wait_until

from vastcap_guard.poller import active_pollers
from vastcap_guard.site import LocalSite


def pytest_report_header() -> list[str]:
    found = find_browser()
    return [f"playwright tests browser: {found[0] if found else 'none found (the tests skip)'}"]


@pytest.fixture
def marker() -> str:
    """A unique command-line switch for the browsers this test launches, to find their processes."""
    return f"--vastcap-guard-test={uuid.uuid4().hex}"


@pytest.fixture
def launch(marker: str) -> dict[str, Any]:
    """Keyword arguments for ``chromium.launch()`` (headless), tagged with this test's marker."""
    found = find_browser()
    if found is None:
        pytest.skip(
            "No Chromium for Playwright: neither a Playwright-managed browser nor /usr/bin/chromium "
            "(apt-get install -y chromium)."
        )
    kwargs = dict(found[1])
    kwargs["args"] = [*kwargs["args"], marker]
    return kwargs


@pytest.fixture(autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """Every test leaves no poller thread and no hook behind."""
    from vastcap_guard.playwright import _hooks

    before = set(guard_threads())
    pollers = active_pollers()
    yield

    def new_threads() -> list[object]:
        return [t for t in guard_threads() if t not in before]

    assert wait_until(lambda: not new_threads(), timeout=10), f"poller threads left: {new_threads()}"
    assert active_pollers() <= pollers
    assert not _hooks.installed(), "Playwright hooks left installed"


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite(pages=64) as s:
        yield s


@pytest.fixture
def hanging() -> Iterator[HangingPage]:
    page = HangingPage()
    try:
        yield page
    finally:
        page.close()
