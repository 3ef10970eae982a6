"""Fixtures for the Playwright adapter tests; test modules import them (see ``pw_support``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pw_support import HangingPage, find_browser, guard_threads, wait_until

from vastcap_guard.poller import active_pollers
from vastcap_guard.site import LocalSite

__all__ = ["hanging_fixture", "launch_fixture", "marker_fixture", "nothing_left_behind_fixture", "site_fixture"]


@pytest.fixture(name="marker")
def marker_fixture() -> str:
    """A unique command-line switch for the browsers this test launches, to find their processes."""
    return f"--vastcap-guard-test={uuid.uuid4().hex}"


@pytest.fixture(name="launch")
def launch_fixture(marker: str) -> dict[str, Any]:
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


@pytest.fixture(name="nothing_left_behind", autouse=True)
def nothing_left_behind_fixture() -> Iterator[None]:
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


@pytest.fixture(name="site")
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
