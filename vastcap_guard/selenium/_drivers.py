"""The WebDrivers of one guarded scope, and stopping them from any thread.

Every tracked driver gets a gate: its ``execute`` (every WebDriver command goes through it) is
wrapped *on the instance*, so other drivers are untouched and a stopped driver stays gated after
the scope. The gate is open until the guard stops the driver; then:

- a command that was in flight and fails raises the guard's error, chained from Selenium's;
- a later command is sent only when it can only fail (the session is over and its end still
  answers: chromedriver's "invalid session id"), and raises the guard's error chained from that
  answer; otherwise (the session not over yet, chromedriver gone) it raises without a request,
  so no urllib3 retries and nothing reaches a site;
- a second ``quit()`` is answered without a request.

Stopping: ``driver.quit()`` from another thread waits for the command in flight (up to the
page-load or script timeout), so a local driver's browser is killed instead: chromedriver's child
processes, or the ``browser_pid`` of drivers that start their browser themselves
(undetected-chromedriver). The pending call then fails at once, and the driver is quit for good
(chromedriver stopped) when the scope ends. A driver without a local browser process
(``webdriver.Remote``; a local one where ``/proc`` does not exist) has its session deleted from a
background thread: a command in flight runs to its end, the next one fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable
from typing import Any

from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webdriver import WebDriver

from ..errors import GuardError

__all__ = ["Drivers"]

logger = logging.getLogger("vastcap_guard.selenium")

#: how long a command on a stopped driver waits for the guard to finish stopping it (a Remote
#: session ends once the command in flight of another thread is done)
SETTLE_WAIT = 10.0
#: how long leaving a stopped scope waits for the background stops
STOP_WAIT = 15.0


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``; elsewhere none are found)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return found


def _service_process(driver: WebDriver) -> Any:
    """The local driver process (chromedriver, geckodriver...) of ``driver``, or ``None``."""
    return getattr(getattr(driver, "service", None), "process", None)


def _end_answers(driver: WebDriver) -> bool:
    """A local driver's process is still running (a remote end is assumed to be up)."""
    if getattr(driver, "service", None) is None:
        return True
    process = _service_process(driver)  # None once stopped, in older Seleniums
    return process is not None and process.poll() is None


class _Gate:
    """What the guard knows about one tracked driver. Shared by the scopes that track it."""

    def __init__(self, driver: WebDriver) -> None:
        self.error: GuardError | None = None
        #: the guard is done stopping it (successfully or not)
        self.settled = threading.Event()
        #: its session is known to be over: a command sent now can only fail
        self.over = False
        self.quit_sent = False
        self.stopping = False
        self.owners = 0
        self._quit_lock = threading.Lock()
        self._original: Callable[..., Any] = type(driver).execute
        ref = weakref.ref(driver)  # no cycle: the driver is collected as soon as it is dropped

        def execute(driver_command: Any, params: dict[str, Any] | None = None) -> Any:
            d = ref()
            assert d is not None
            return self.execute(d, driver_command, params)

        self.wrapper = execute

    def execute(self, driver: WebDriver, command: Any, params: dict[str, Any] | None) -> Any:
        error = self.error
        if error is None:
            try:
                return self._original(driver, command, params)
            except Exception as exc:
                if self.error is None or command == Command.QUIT:
                    raise
                raise self.error.with_traceback(None) from exc  # the stop made a pending call fail
        if command == Command.QUIT:
            with self._quit_lock:
                if self.quit_sent:
                    return {"value": None}  # quit already: nothing to ask
                try:
                    result = self._original(driver, command, params)
                    self.over = True
                    return result
                finally:
                    self.quit_sent = True
                    self.settled.set()
        self.settled.wait(SETTLE_WAIT)
        if not self.over or not _end_answers(driver):
            raise error.with_traceback(None)  # nothing that can only fail would answer: send nothing
        try:
            self._original(driver, command, params)
        except Exception as exc:
            raise error.with_traceback(None) from exc
        raise error.with_traceback(None)

    def stop(self, driver: WebDriver) -> None:
        """End the session so that a pending or next command fails (any thread, once)."""
        with _gates_lock:
            if self.stopping:
                return
            self.stopping = True
        try:
            process = _service_process(driver)
            pids = _children(process.pid) if process is not None and process.poll() is None else []
            browser_pid = getattr(driver, "browser_pid", None)  # a browser the driver started itself
            if isinstance(browser_pid, int) and browser_pid not in pids:
                pids.append(browser_pid)
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    self.over = True
            if not self.over:
                # DELETE the session (through the gate), once a command in flight on it is done
                driver.execute(Command.QUIT)
        except Exception:
            logger.debug("stopping %s failed", type(driver).__name__, exc_info=True)
        finally:
            self.settled.set()


_gates: weakref.WeakKeyDictionary[WebDriver, _Gate] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _gates_lock
    _gates_lock = threading.Lock()  # the parent's lock may have been held by another thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Drivers:
    """The drivers one scope started or watches. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drivers: weakref.WeakSet[WebDriver] = weakref.WeakSet()
        self._threads: list[threading.Thread] = []

    def track(self, driver: Any) -> None:
        if not isinstance(driver, WebDriver):
            raise TypeError(f"watch() takes a Selenium WebDriver, not {type(driver).__name__}")
        with self._lock:
            if driver in self._drivers:
                return
            self._drivers.add(driver)
        with _gates_lock:
            gate = _gates.get(driver)
            if gate is None:
                gate = _gates[driver] = _Gate(driver)
                driver.__dict__["execute"] = gate.wrapper  # on the instance: other drivers are untouched
            gate.owners += 1

    def stop_all(self, error: GuardError) -> None:
        """Close every tracked driver's gate now; end their sessions in a background thread."""
        with self._lock:  # atomic with respect to leave(): it joins every thread started here
            pending = []
            with _gates_lock:
                for driver in self._drivers:
                    gate = _gates.get(driver)
                    if gate is not None and gate.error is None:
                        gate.error = error  # from now on, the gate is closed
                        pending.append((driver, gate))
            if not pending:
                return

            def stop() -> None:
                for driver, gate in pending:
                    gate.stop(driver)

            thread = threading.Thread(target=stop, name="vastcap-guard-selenium-stop", daemon=True)
            self._threads.append(thread)
            thread.start()

    def leave(self) -> None:
        """The scope ends: quit what was stopped; un-gate the others no other scope watches. A stop
        decided after this point finds no driver (the run is over; the scope raises its error)."""
        with self._lock:
            drivers, threads = list(self._drivers), list(self._threads)
            self._drivers = weakref.WeakSet()
        for thread in threads:
            thread.join(STOP_WAIT)
        for driver in drivers:
            gate = _gates.get(driver)
            if gate is None:
                continue
            if gate.error is not None:
                try:
                    driver.quit()  # stops chromedriver; a command the gate answers itself if quit already
                except Exception:
                    logger.debug("quitting %s failed", type(driver).__name__, exc_info=True)
                continue
            with _gates_lock:
                gate.owners -= 1
                if gate.owners <= 0:
                    _gates.pop(driver, None)
                    if driver.__dict__.get("execute") is gate.wrapper:
                        del driver.__dict__["execute"]

    def forget_all(self) -> None:
        """In a forked child: the parent's drivers are not ours to stop."""
        self._lock = threading.Lock()
        self._drivers = weakref.WeakSet()
        self._threads = []
