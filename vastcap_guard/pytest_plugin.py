"""pytest plugin (registered through the ``pytest11`` entry point): the ``vastcap_sandbox`` fixture.

Use it to test your own spiders and scripts offline::

    def test_my_spider_stops(vastcap_sandbox):
        vastcap_sandbox.set_balance(vastcap_sandbox.key, 0)
        settings = {"VASTCAP_API_URL": vastcap_sandbox.url, "VASTCAP_API_KEY": vastcap_sandbox.key}
        ...

The fixture is a started :class:`vastcap_guard.sandbox.Sandbox` with one account
(``vastcap_sandbox.key``, balance $10, price $0.002 per solved task), stopped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .sandbox import Sandbox


@pytest.fixture
def vastcap_sandbox() -> Iterator[Sandbox]:
    """A running VastCap sandbox on loopback with one funded account (``.key``)."""
    with Sandbox() as sandbox:
        yield sandbox
