"""Arguments, reprs and misuse of ``vastcap_guard.selenium.guard`` (no browser needed)."""

from __future__ import annotations

import inspect

import pytest
from core_keys import KEY
from sel_support import nothing_left_behind_fixture  # noqa: F401

from vastcap_guard import ConfigError
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.selenium import SeleniumGuard, guard


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
        ({"timeout": -2}, "timeout"),
        ({"warn_minutes": "soon"}, "warn_minutes"),
        ({"require_preflight": "perhaps"}, "require_preflight"),
        ({"api_url": "ftp://example.com"}, "api_url"),
        ({"shared_state": "http://127.0.0.1:6379/0"}, "shared_state"),
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
    assert isinstance(g, SeleniumGuard)
    assert KEY not in repr(g) and KEY not in str(g)
    assert repr(g).startswith("SeleniumGuard(api_key='vc_…")


def test_decorator_misuse_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="parentheses"):

        @guard  # type: ignore[arg-type]
        def script() -> None:
            pass

    async def coro() -> None:
        pass

    def gen() -> object:
        yield 1

    for fn in (coro, gen):
        with pytest.raises(TypeError):
            guard(KEY)(fn)


def test_decorated_functions_keep_their_name_return_their_value_and_each_call_is_a_run(sandbox: Sandbox) -> None:
    g = guard(KEY, api_url=sandbox.url, interval=60)

    @g
    def double(x: int) -> int:
        assert g.balance is not None
        return x * 2

    assert double.__name__ == "double" and not inspect.iscoroutinefunction(double)
    assert double(2) == 4 and double(3) == 6
    assert g.snapshot()["checks"] == 1 and g.tripped is None  # the second run reused the reading


def test_watch_outside_a_run_and_of_other_objects_is_an_error(sandbox: Sandbox) -> None:
    with pytest.raises(RuntimeError):
        guard(KEY).watch(object())
    with guard(KEY, api_url=sandbox.url, interval=60) as g:
        with pytest.raises(TypeError, match="WebDriver"):
            g.watch(object())
