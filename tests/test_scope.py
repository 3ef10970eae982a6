"""The sync-scope machinery of the Python adapters (vastcap_guard.scope), on a made-up framework.

The framework has a ``Launcher.launch()`` that starts a ``Session``; the adapter below is what a
real one is: hooks on the starting method, tracking, a stop and a clean-up.
"""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from core_keys import KEY, LOW_KEY

from vastcap_guard import ConfigError, GuardError, LowBalanceError
from vastcap_guard.poller import active_pollers
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.scope import ScopedGuard, SessionHooks, SyncScope, build_config
from vastcap_guard.wording import PYTHON_NAMES, Wording


class Session:
    def __init__(self) -> None:
        self.stopped: GuardError | None = None

    def work(self) -> str:
        if self.stopped is not None:
            raise ConnectionError("session closed")  # what the framework raises once stopped
        return "ok"


class Launcher:
    def launch(self) -> Session:
        return Session()


class FakeScope(SyncScope):
    hooks = SessionHooks("fake", lambda: [(Launcher, "launch")])
    wording = Wording(job="fake job", names=PYTHON_NAMES)
    logger = logging.getLogger("vastcap_guard.test.scope")

    def __init__(self, owner: ScopedGuard) -> None:
        self.sessions: list[Session] = []
        self.stops: list[GuardError] = []
        self.left: list[GuardError | None] = []
        super().__init__(owner)

    def track(self, obj: Any) -> None:
        if not isinstance(obj, Session):
            raise TypeError("not a Session")
        self.sessions.append(obj)

    def stop_sessions(self, error: GuardError) -> None:
        self.stops.append(error)
        for s in self.sessions:
            s.stopped = error

    def leave(self, error: GuardError | None) -> None:
        self.left.append(error)


class FakeGuard(ScopedGuard):
    scope_class = FakeScope

    def current(self) -> FakeScope:
        scope = self._scope(last=True)
        assert isinstance(scope, FakeScope)
        return scope


def fake_guard(sb: Sandbox, key: str = KEY, **kw: Any) -> FakeGuard:
    kw.setdefault("interval", 0.2)
    return FakeGuard(build_config(key, api_url=sb.url, **kw))


def wait_for(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


ORIGINAL_LAUNCH = Launcher.__dict__["launch"]


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Any:
    pollers = active_pollers()
    yield
    assert Launcher.__dict__["launch"] is ORIGINAL_LAUNCH
    assert not FakeScope.hooks.installed()
    assert wait_for(lambda: active_pollers() <= pollers)


def test_a_refused_preflight_never_runs_the_body_nor_hooks(sandbox: Sandbox) -> None:
    g = fake_guard(sandbox, LOW_KEY)
    ran: list[bool] = []
    with pytest.raises(LowBalanceError):
        with g:
            ran.append(True)
    assert ran == [] and g.tripped is not None and g.snapshot()["tripped"] == "vastcap_low_balance"
    assert g.current().sessions == [] and g.current().stops == []


def test_sessions_started_inside_are_tracked_and_hooks_end_with_the_scope(sandbox: Sandbox) -> None:
    launcher = Launcher()
    outside = launcher.launch()
    with fake_guard(sandbox) as g:
        assert Launcher.__dict__["launch"] is not ORIGINAL_LAUNCH
        inside = launcher.launch()
        in_thread: list[Session] = []
        t = threading.Thread(target=lambda: in_thread.append(launcher.launch()))  # no context: not guarded
        t.start()
        t.join()
        scope = g.current()
        assert scope.sessions == [inside]
    assert scope.left == [None]
    assert Launcher.__dict__["launch"] is ORIGINAL_LAUNCH
    assert outside.stopped is None and in_thread[0].stopped is None


def test_a_stop_stops_sessions_and_the_body_raises_the_guard_error_chained(sandbox: Sandbox) -> None:
    launcher = Launcher()
    with pytest.raises(LowBalanceError) as info:
        with fake_guard(sandbox) as g:
            session = launcher.launch()
            sandbox.set_balance(KEY, 0)
            assert wait_for(lambda: session.stopped is not None)
            session.work()
    assert isinstance(info.value.__cause__, ConnectionError)
    assert g.tripped is info.value and g.current().stops == [info.value]
    assert g.current().left == [info.value]


def test_a_start_after_a_stop_is_refused(sandbox: Sandbox) -> None:
    launcher = Launcher()
    with pytest.raises(LowBalanceError) as info:
        with fake_guard(sandbox) as g:
            launcher.launch()
            sandbox.set_balance(KEY, 0)
            assert wait_for(lambda: g.tripped is not None)
            launcher.launch()
    assert info.value.__cause__ is None  # raised by the hook itself
    assert len(g.current().sessions) == 1  # refused before the original ran


def test_a_body_that_finishes_after_a_stop_raises_at_exit(sandbox: Sandbox) -> None:
    with pytest.raises(LowBalanceError) as info:
        with fake_guard(sandbox) as g:
            sandbox.set_balance(KEY, 0)
            assert wait_for(lambda: g.tripped is not None)
    assert info.value.__cause__ is None


def test_keyboard_interrupt_after_a_stop_passes_through(sandbox: Sandbox) -> None:
    with pytest.raises(KeyboardInterrupt):
        with fake_guard(sandbox) as g:
            sandbox.set_balance(KEY, 0)
            assert wait_for(lambda: g.tripped is not None)
            raise KeyboardInterrupt


def test_a_body_error_without_a_stop_is_not_translated(sandbox: Sandbox) -> None:
    with pytest.raises(ZeroDivisionError):
        with fake_guard(sandbox, interval=60):
            1 / 0  # noqa: B018


def test_nested_scopes_each_track_and_stop_their_own(sandbox: Sandbox) -> None:
    sandbox.add_account("vc_OTHER_s3cr3t_000000000001", "10")
    launcher = Launcher()
    with fake_guard(sandbox, interval=60) as outer:
        before = launcher.launch()
        with pytest.raises(LowBalanceError), fake_guard(sandbox, "vc_OTHER_s3cr3t_000000000001") as inner:
            both = launcher.launch()
            sandbox.set_balance("vc_OTHER_s3cr3t_000000000001", 0)
            assert wait_for(lambda: inner.tripped is not None)
        assert outer.tripped is None
        assert outer.current().sessions == [before, both] and inner.current().sessions == [both]
        assert both.stopped is not None and before.stopped is None


def test_watch_adds_a_session_and_after_a_stop_stops_it_and_raises(sandbox: Sandbox) -> None:
    made_before = Session()
    with pytest.raises(RuntimeError):
        fake_guard(sandbox).watch(made_before)  # outside a run
    with pytest.raises(LowBalanceError):
        with fake_guard(sandbox) as g:
            assert g.watch(made_before) is made_before
            with pytest.raises(TypeError):
                g.watch(object())
            sandbox.set_balance(KEY, 0)
            assert wait_for(lambda: made_before.stopped is not None)
            late = Session()
            with pytest.raises(LowBalanceError):
                g.watch(late)
            assert late.stopped is not None


def test_ensure_funds_projects_then_refuses_and_stops(sandbox: Sandbox) -> None:
    launcher = Launcher()
    with pytest.raises(LowBalanceError) as info:
        with fake_guard(sandbox, interval=60) as g:
            session = launcher.launch()
            assert g.ensure_funds("0.25") == Decimal("10.00")
            g.ensure_funds("10")
    assert session.stopped is info.value and g.current().stops == [info.value]


def test_decorator_each_call_is_a_run_and_misuse_is_clear(sandbox: Sandbox) -> None:
    g = fake_guard(sandbox, interval=60)

    @g
    def double(x: int) -> int:
        assert g.balance == Decimal("10.25")
        return 2 * x

    assert double(2) == 4 and double(3) == 6 and double.__name__ == "double"
    assert g.snapshot()["checks"] == 1 and g.forecast.state == "unknown"

    async def coro() -> None:
        pass

    def gen() -> Any:
        yield 1

    for fn in (coro, gen):
        with pytest.raises(TypeError):
            g(fn)
    with pytest.raises(TypeError, match="parentheses"):
        build_config(double)  # type: ignore[arg-type]


def test_bad_values_name_the_argument_and_reprs_mask_the_key(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(KEY, interval=0)
    assert info.value.setting == "interval" and "interval" in str(info.value)
    g = fake_guard(sandbox)
    assert KEY not in repr(g) and repr(g).startswith("FakeGuard(api_key='vc_…")
    assert "installed=False" in repr(FakeScope.hooks)
