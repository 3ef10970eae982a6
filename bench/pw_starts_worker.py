"""Session starts under the guard: a new context and page for every page load, real Chromium.

Usage: ``python bench/pw_starts_worker.py CONFIG_JSON`` (keys: guard, key, api_url, site_url,
interval, warmup, api ("sync" or "async"), chromium, slots). Prints one JSON line: page loads,
the measured time, loads per second and, when guarded, the guard's checks and how long each
session start took to be admitted. Started by ``bench/run.py`` (benchmark ``pwstarts``).

One browser is launched first and ``warmup`` pages are loaded. Then, in each of its ``slots``
(``[start, end]`` in ``time.time()``; the two processes of a pair take turns, a few seconds each,
so both sample the same moments of a shared machine and never load at the same time), each page
load opens a context and a page (two session starts the guard checks and tracks), loads one page of
the local site and closes the context. The rate is loads over the time from each slot's start to
its last load's end. With the guard, every start is admitted on the latest reading while the poller's next
one (300 ms at the sandbox) is on its way: no start should wait on the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


#: seconds each session start spent being admitted by the guard (guarded runs only)
ADMISSIONS: list[float] = []


def time_admissions() -> None:
    """Instrument the two calls through which the hooks admit a session start (the whole of what
    a start may wait on: the guard's own bookkeeping, or a fresh reading when it needs one)."""
    from vastcap_guard.run import GuardedRun

    blocking, asynchronous = GuardedRun.admit_blocking, GuardedRun.admit_async

    def admit_blocking(self: GuardedRun) -> None:
        started = time.perf_counter()
        try:
            blocking(self)
        finally:
            ADMISSIONS.append(time.perf_counter() - started)

    async def admit_async(self: GuardedRun) -> None:
        started = time.perf_counter()
        try:
            await asynchronous(self)
        finally:
            ADMISSIONS.append(time.perf_counter() - started)

    GuardedRun.admit_blocking = admit_blocking  # type: ignore[method-assign]
    GuardedRun.admit_async = admit_async  # type: ignore[method-assign]


def guarded(cfg: dict[str, Any]) -> Any:
    if not cfg["guard"]:
        return contextlib.nullcontext()
    from vastcap_guard.playwright import guard

    time_admissions()
    return guard(cfg["key"], api_url=cfg["api_url"], interval=cfg["interval"])


def url(cfg: dict[str, Any], n: int) -> str:
    return f"{cfg['site_url']}page/{n % 1000}"


def slots(cfg: dict[str, Any]) -> list[tuple[float, float]]:
    """This side's measuring slots, ``(start, end)`` in ``time.perf_counter()`` terms."""
    offset = time.perf_counter() - time.time()
    return [(a + offset, b + offset) for a, b in cfg["slots"]]


def run_sync(cfg: dict[str, Any]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with guarded(cfg) as g, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=cfg.get("chromium") or None, args=ARGS)
        out["browser_version"] = browser.version

        def load(n: int) -> None:
            context = browser.new_context()
            context.new_page().goto(url(cfg, n))
            context.close()

        for n in range(cfg["warmup"]):
            load(n)
        ADMISSIONS.clear()
        loads, elapsed, late, took = 0, 0.0, 0.0, 0.0
        for start, end in slots(cfg):
            late = max(late, time.perf_counter() - start)
            time.sleep(max(0.0, start - time.perf_counter()))
            finished = start
            # a load starts only when it will likely end within the slot (the other side's is next)
            while time.perf_counter() + took < end:
                began = time.perf_counter()
                load(loads)
                loads += 1
                finished = time.perf_counter()
                took = finished - began
            elapsed += finished - start  # to the end of the slot's last load
        out.update(loads=loads, elapsed=elapsed, late=late)
        browser.close()
        if g is not None:
            out["snapshot"] = g.snapshot()
    return out


async def run_async(cfg: dict[str, Any]) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    out: dict[str, Any] = {}
    scope = guarded(cfg)
    async with contextlib.AsyncExitStack() as stack:
        g = await stack.enter_async_context(scope)
        p = await stack.enter_async_context(async_playwright())
        browser = await p.chromium.launch(executable_path=cfg.get("chromium") or None, args=ARGS)
        out["browser_version"] = browser.version

        async def load(n: int) -> None:
            context = await browser.new_context()
            await (await context.new_page()).goto(url(cfg, n))
            await context.close()

        for n in range(cfg["warmup"]):
            await load(n)
        ADMISSIONS.clear()
        loads, elapsed, late, took = 0, 0.0, 0.0, 0.0
        for start, end in slots(cfg):
            late = max(late, time.perf_counter() - start)
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            finished = start
            while time.perf_counter() + took < end:
                began = time.perf_counter()
                await load(loads)
                loads += 1
                finished = time.perf_counter()
                took = finished - began
            elapsed += finished - start
        out.update(loads=loads, elapsed=elapsed, late=late)
        await browser.close()
        if g is not None:
            out["snapshot"] = g.snapshot()
    return out


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    out = run_sync(cfg) if cfg["api"] == "sync" else asyncio.run(run_async(cfg))
    out["rate"] = out["loads"] / out["elapsed"]
    out["admissions"] = ADMISSIONS
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1])), default=str))
