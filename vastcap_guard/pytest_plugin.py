"""pytest plugin (registered through the ``pytest11`` entry point): the ``vastcap_sandbox`` fixture.

Use it to test your own spiders and scripts offline, with :func:`vastcap_guard.testing.run_spider`
(each crawl runs in a child process: Twisted's reactor cannot restart)::

    from vastcap_guard.testing import run_spider

    def test_my_spider_refuses_to_start(vastcap_sandbox):
        vastcap_sandbox.set_balance(vastcap_sandbox.key, 0)
        result = run_spider("myproject.spiders.shop:ShopSpider", sandbox=vastcap_sandbox)
        assert result.finish_reason == "vastcap_low_balance"

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
