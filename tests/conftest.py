from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from core_keys import DISABLED_KEY, KEY, LOW_KEY

from vastcap_guard.sandbox import Sandbox


@pytest.fixture(autouse=True)
def _no_ambient_vastcap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key or URL from the environment."""
    monkeypatch.delenv("VASTCAP_API_KEY", raising=False)
    monkeypatch.delenv("VASTCAP_API_URL", raising=False)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox({KEY: "10.25", LOW_KEY: "0.0005"}, disabled=[DISABLED_KEY], price="0.002") as sb:
        yield sb


def pytest_report_header() -> list[str]:
    return [f"chromium: {'/usr/bin/chromium' if os.path.exists('/usr/bin/chromium') else 'missing'}"]
