"""Fence: the private parts of Scrapy that ``vastcap_guard.scrapy._compat.DownloaderGate`` relies on.

The gate holds and drops requests waiting in the downloader's slots (no public API reaches them).
If a Scrapy release changes any of these, this module fails loudly, naming what changed, before
a crawl silently sends requests after a stop or never resumes after a pause. The end-to-end tests
(``test_scrapy_stops.py``, ``test_scrapy_pause.py``) prove the behaviour with real crawls.
"""

from __future__ import annotations

import inspect
from collections import deque

from scrapy import signals
from scrapy.core.downloader import Downloader, Slot
from scrapy.core.engine import ExecutionEngine, _Slot
from scrapy.utils.reactor import CallLaterOnce

from vastcap_guard.scrapy._compat import _process_queue_takes_spider


def _new_slot() -> Slot:
    params = inspect.signature(Slot).parameters
    return Slot(1, 0.0, 0.5) if "jitter" in params else Slot(1, 0.0, True)


def test_a_slot_has_a_queue_of_request_deferred_pairs_and_a_concurrency() -> None:
    slot = _new_slot()
    assert isinstance(slot.queue, deque)
    assert isinstance(slot.concurrency, int)
    assert isinstance(slot.transferring, set) and isinstance(slot.active, set)
    slot.concurrency = 0
    # the tap: _process_queue pops only while this is > 0
    assert slot.free_transfer_slots() == 0


def test_process_queue_pops_only_while_the_slot_has_free_transfer_slots() -> None:
    src = inspect.getsource(Downloader._process_queue)
    assert "while slot.queue and slot.free_transfer_slots() > 0" in src
    assert "slot.queue.popleft()" in src
    params = list(inspect.signature(Downloader._process_queue).parameters)
    assert params in (["self", "spider", "slot"], ["self", "slot"]), params
    assert _process_queue_takes_spider() is (params == ["self", "spider", "slot"])


def test_the_downloader_keeps_its_slots_in_a_dict_by_key() -> None:
    assert "self.slots: dict[str, Slot] = {}" in inspect.getsource(Downloader.__init__)
    assert Downloader.DOWNLOAD_SLOT == "download_slot"


def test_a_request_reaches_its_slot_signal_first_then_the_queue() -> None:
    src = inspect.getsource(Downloader._enqueue_request)
    assert "request.meta[self.DOWNLOAD_SLOT] = key" in src
    assert src.index("request.meta[self.DOWNLOAD_SLOT] = key") < src.index("request_reached_downloader")
    # the gate holds a new slot from the signal, before the request joins the queue
    assert src.index("request_reached_downloader") < src.index("slot.queue.append((request,")
    assert signals.request_reached_downloader is not None


def test_the_engine_slot_has_closing_and_a_nextcall_that_wakes_the_engine() -> None:
    params = inspect.signature(_Slot.__init__).parameters
    assert "nextcall" in params
    assert "self.closing" in inspect.getsource(_Slot.__init__)
    assert callable(CallLaterOnce.schedule)
    src = inspect.getsource(ExecutionEngine._start_scheduled_requests)
    # a paused engine takes nothing from the scheduler, and a closing one neither
    assert "self.paused" in src and "self._slot.closing is not None" in src
    assert "self.paused = True" in inspect.getsource(ExecutionEngine.pause)
    assert "self.paused = False" in inspect.getsource(ExecutionEngine.unpause)


def test_a_close_waits_for_the_requests_in_progress() -> None:
    # why the gate must drop held requests when a close starts: the close waits for every one
    src = inspect.getsource(_Slot._maybe_fire_closing)
    assert "not self.inprogress" in src
