"""Starts the reliability suite's Scrapy batches in the background as soon as collection is done.

Each batch is one subprocess running many short crawls (``rel_runner.py``); they run in parallel
with each other and with the in-process Playwright tests. A test names its batch with the
parameter ``batch``; only the batches of the selected tests are started.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rel_support import Batches

_BATCHES = Batches()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    names = {
        item.callspec.params["batch"]
        for item in session.items
        if hasattr(item, "callspec") and "batch" in item.callspec.params
    }
    # the longest first
    order = ["flap", "asyncio", "reactorless", "twisted", "misc"]
    _BATCHES.start(sorted(names, key=lambda n: order.index(n) if n in order else len(order)))


def pytest_unconfigure(config: pytest.Config) -> None:
    _BATCHES.close()


@pytest.fixture(scope="session")
def batches() -> Iterator[Batches]:
    yield _BATCHES
