"""The third-party ``vastcap`` SDK, pointed at the sandbox, reads the balance: the sandbox is faithful."""

from __future__ import annotations

import pytest
from core_keys import BAD_KEY, KEY

from vastcap_guard.sandbox import Sandbox

vastcap = pytest.importorskip("vastcap", reason="the test extra installs the vastcap SDK")


def _client(key: str, sb: Sandbox) -> object:
    client = vastcap.Vast(key)
    client.API_BASE_URL = sb.url
    return client


def test_sdk_reads_the_balance(sandbox: Sandbox) -> None:
    assert _client(KEY, sandbox).get_balance() == 10.25  # type: ignore[attr-defined]
    sandbox.set_balance(KEY, "0.5")
    assert _client(KEY, sandbox).get_balance() == 0.5  # type: ignore[attr-defined]


def test_sdk_sees_invalid_key(sandbox: Sandbox) -> None:
    from vastcap.exceptions import InvalidAPIKeyError

    with pytest.raises(InvalidAPIKeyError):
        _client(BAD_KEY, sandbox).get_balance()  # type: ignore[attr-defined]


def test_sdk_spends_through_the_sandbox(sandbox: Sandbox) -> None:
    from vastcap.types import RecaptchaV2Task

    client = _client(KEY, sandbox)
    solution = client.solve(RecaptchaV2Task(website_url="http://127.0.0.1/", website_key="k"), timeout=5, polling=0.05)  # type: ignore[attr-defined]
    assert solution.grecaptcha_response
    assert float(sandbox.balance(KEY)) == pytest.approx(10.25 - 0.002)
