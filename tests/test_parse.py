"""The response parser on arbitrary input: a Decimal, a GuardError or MalformedResponse, nothing else."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from vastcap_guard._parse import MalformedResponse, parse_balance_response
from vastcap_guard.errors import GuardError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _outcome(status: int, body: bytes) -> object:
    try:
        return parse_balance_response(status, body)
    except (GuardError, MalformedResponse) as exc:
        return exc


@settings(max_examples=400, deadline=None)
@given(st.integers(100, 599), st.binary(max_size=300))
def test_arbitrary_bytes(status: int, body: bytes) -> None:
    out = _outcome(status, body)
    assert isinstance(out, (Decimal, GuardError, MalformedResponse))
    if isinstance(out, Decimal):
        assert out.is_finite()


@settings(max_examples=400, deadline=None)
@given(st.integers(100, 599), json_values)
def test_arbitrary_json(status: int, value: object) -> None:
    body = json.dumps(value).encode()
    out = _outcome(status, body)
    assert isinstance(out, (Decimal, GuardError, MalformedResponse))


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(["balance", "error", "errorId", "errorCode"]), json_values)))
def test_arbitrary_objects_in_balance_shape(value: object) -> None:
    body = json.dumps({"balance": value} if not isinstance(value, dict) else value).encode()
    assert isinstance(_outcome(200, body), (Decimal, GuardError, MalformedResponse))


@given(st.decimals(min_value=-10**9, max_value=10**9, allow_nan=False, allow_infinity=False, places=10))
def test_numbers_are_exact(amount: Decimal) -> None:
    body = b'{"balance": ' + str(amount).encode() + b"}"
    assert parse_balance_response(200, body) == amount


def test_bool_is_not_a_number() -> None:
    assert isinstance(_outcome(200, b'{"balance": true}'), MalformedResponse)


def test_flat_error_form_is_understood() -> None:
    out = _outcome(200, b'{"errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST"}')
    assert isinstance(out, GuardError) and out.reason == "vastcap_invalid_key"


def test_error_zero_with_balance_is_a_balance() -> None:
    assert _outcome(200, b'{"errorId": 0, "balance": 3}') == Decimal(3)


def test_absurd_balance_is_malformed() -> None:
    assert isinstance(_outcome(200, b'{"balance": 1e999999999}'), MalformedResponse)


def test_absurd_precision_is_malformed() -> None:
    assert isinstance(_outcome(200, b'{"balance": 1e-999999}'), MalformedResponse)
    assert parse_balance_response(200, b'{"balance": 0.0000000001}') == Decimal("1e-10")
