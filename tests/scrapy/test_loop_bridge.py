"""LoopBridge.wait on an asyncio loop: one waiter cancelled leaves the shared future, and every
other waiter, alone (a pipeline's ``asyncio.wait_for(guard.ensure_funds(...), 5)`` timing out
during a pause must not cancel the other requests waiting for the same resume)."""

from __future__ import annotations

import asyncio
import concurrent.futures

from vastcap_guard.scrapy._compat import LoopBridge


def bridge_on(loop: asyncio.AbstractEventLoop) -> LoopBridge:
    bridge = LoopBridge.__new__(LoopBridge)  # what __init__ captures inside a Scrapy callback
    bridge.asyncio, bridge._loop, bridge._reactor = True, loop, None
    return bridge


def test_a_cancelled_waiter_does_not_cancel_the_shared_future_or_the_other_waiters() -> None:
    async def main() -> tuple[str, bool, object]:
        bridge = bridge_on(asyncio.get_running_loop())
        resumed: concurrent.futures.Future[str] = concurrent.futures.Future()
        impatient = asyncio.ensure_future(asyncio.wait_for(bridge.wait(resumed), 0.05))
        patient = asyncio.ensure_future(bridge.wait(resumed))
        try:
            await impatient
        except TimeoutError as exc:
            timed_out: object = exc
        else:
            timed_out = None
        cancelled = resumed.cancelled()
        if not cancelled:
            resumed.set_result("resumed")  # the top-up
        return await asyncio.wait_for(patient, 5), cancelled, timed_out

    result, cancelled, timed_out = asyncio.run(main())
    assert isinstance(timed_out, TimeoutError)
    assert not cancelled
    assert result == "resumed"
