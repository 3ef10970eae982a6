"""Arguments, reprs and misuse of ``vastcap_guard.playwright.guard`` (no browser needed)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from core_keys import KEY
from pw_fixtures import (  # noqa: F401
    hanging_fixture,
    launch_fixture,
    marker_fixture,
    nothing_left_behind_fixture,
    site_fixture,
)

from vastcap_guard import ConfigError
from vastcap_guard.playwright import PlaywrightGuard, guard
from vastcap_guard.sandbox import Sandbox


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": "soon"}, "interval"),
        ({"min_balance": "lots"}, "min_balance"),
        ({"min_balance": -1}, "min_balance"),
        ({"warn_balance": "x"}, "warn_balance"),
        ({"max_spend": 0}, "max_spend"),
        ({"max_failures": -1}, "max_failures"),
        ({"max_failures": 1.5}, "max_failures"),
        ({"timeout": -2}, "timeout"),
        ({"api_url": "ftp://example.com"}, "api_url"),
    ],
)
def test_bad_values_raise_at_construction_naming_the_parameter(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        guard(KEY, **kwargs)  # type: ignore[arg-type]
    assert info.value.setting == setting
    assert setting in str(info.value)
    assert KEY not in str(info.value)


def test_repr_masks_the_key() -> None:
    g = guard(KEY, api_url="http://127.0.0.1:9/api/solver")
    assert KEY not in repr(g) and KEY not in str(g)
    assert "vc_…" in repr(g)
    assert isinstance(g, PlaywrightGuard)


def test_decorator_without_parentheses_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="parentheses"):

        @guard  # type: ignore[arg-type]
        def script() -> None:
            pass


def test_generators_are_refused() -> None:
    def gen() -> object:
        yield 1

    with pytest.raises(TypeError):
        guard(KEY)(gen)


def test_decorator_keeps_the_function_kind_and_name() -> None:
    g = guard(KEY)

    @g
    async def a() -> int:
        return 1

    @g
    def s() -> int:
        return 2

    assert inspect.iscoroutinefunction(a) and a.__name__ == "a"
    assert not inspect.iscoroutinefunction(s) and s.__name__ == "s"


def test_decorated_functions_return_their_value_and_each_call_is_a_run(sandbox: Sandbox) -> None:
    g = guard(KEY, api_url=sandbox.url, interval=60)

    @g
    def s(x: int) -> int:
        assert g.balance is not None
        return x * 2

    @g
    async def a(x: int) -> int:
        return x * 3

    assert s(2) == 4 and s(3) == 6
    assert asyncio.run(a(2)) == 6
    assert g.snapshot()["checks"] == 1 and g.tripped is None


def test_watch_outside_a_run_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        guard(KEY).watch(object())


def test_watch_rejects_non_playwright_objects(sandbox: Sandbox) -> None:
    with guard(KEY, api_url=sandbox.url, interval=60) as g:
        with pytest.raises(TypeError):
            g.watch(object())
