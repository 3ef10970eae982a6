"""A stopped sync script ends cleanly: no asyncio noise at exit, for every installed flavor.

Playwright 1.40-1.64 (and patchright / rebrowser-playwright 1.64) left "Future exception was never
retrieved" / "Task was destroyed but it is pending!" on stderr when a sync script was stopped: the
close the guard scheduled from its poller thread was still waiting for the driver's answer when
``with sync_playwright()`` tore the connection down. The guard now lets it finish first (the drain,
``_private.drain_sync_closes``). Each case runs ``guarded_script.py`` in its own process, since
the noise comes at interpreter exit. scripts/test.sh also runs this module on the oldest supported
Playwright, where every case failed before the drain.
"""

from __future__ import annotations

from typing import Any

import pytest
from pw_fixtures import launch_fixture, marker_fixture  # noqa: F401
from pw_support import assert_gone, exit_noise, run_guarded_script

from vastcap_guard.playwright import _flavors

pytestmark = pytest.mark.browser

FLAVORS = _flavors.installed_names()
CASES = [
    pytest.param(flavor, "sync", shape, id=f"{flavor}-sync-{shape}")
    for flavor in FLAVORS
    # every shape on Playwright itself; the forks share its client code, two shapes suffice
    for shape in (("decorator", "inner", "sleep", "startstop") if flavor == "playwright" else ("decorator", "sleep"))
] + [pytest.param(flavor, "async", "decorator", id=f"{flavor}-async-decorator") for flavor in FLAVORS]


@pytest.mark.parametrize(("flavor", "api", "shape"), CASES)
def test_a_stopped_script_exits_without_asyncio_noise(
    launch: dict[str, Any], marker: str, flavor: str, api: str, shape: str
) -> None:
    result, stderr = run_guarded_script({"flavor": flavor, "api": api, "shape": shape, "launch": launch})
    assert result["error"] == "LowBalanceError", result
    assert result["loads"] == 1 and result["reached_end"] is False
    if shape != "sleep":  # stopped inside a Playwright call: that call failed, chained
        assert result["cause"] is not None and result["cause"].startswith(f"{flavor}."), result
    assert exit_noise(stderr) == [], "asyncio noise at exit:\n" + stderr[-3000:]
    assert "stopping the Playwright script [vastcap_low_balance]" in stderr  # the one ERROR line
    assert_gone(marker)
