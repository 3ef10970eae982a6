"""The guarded run: everything an adapter needs except its framework's idiom.

A :class:`GuardedRun` is one guarded job (a crawl, a script's ``with guard()`` block, a CLI
``watch``). It owns the job's :class:`~vastcap_guard.Guard` (the decisions) and its membership in
the account's shared poller, and it does what every adapter would otherwise repeat:

- **pre-flight** with one deadline (:attr:`GuardConfig.check_deadline`): join the poller, get a
  reading (a recent one of the same account is reused if it would not stop the job), decide;
- **periodic readings**: taken from the poller thread and handed to the adapter's loop or thread
  (``deliver``), then decided;
- **session starts** (:meth:`admission`): admitted at once on the latest reading while the
  poller's next one is on its way; a start waits only when the poller has been quiet for longer
  than its interval and its deadline;
- **verdicts and messages**: every log line, worded with the adapter's names for its settings
  (:class:`~vastcap_guard.wording.Wording`);
- **spending**: :meth:`ensure_funds` (reserve, refuse, stop), and the stats :meth:`snapshot`.

The adapter supplies three callables: ``deliver(func, *args)`` runs ``func`` on its loop (omit it
when reacting in the poller thread is safe), ``on_stop(error, at_start)`` stops the job in the
framework's idiom (close the spider, close the browsers, ``crawler.stop``), and ``on_verdict``
(optional) turns a verdict into stats and signals.

Nothing here imports a framework. See ``docs/architecture.md`` for the path of one reading.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Callable
from decimal import Decimal

from .config import GuardConfig, parse_cost
from .errors import ApiUnavailableError, ConfigError, GuardError, LowBalanceError
from .forecast import Forecast
from .guard import Action, Guard, Reading, Verdict
from .poller import ClientFactory, Subscription, subscribe
from .wording import Wording

__all__ = ["GuardedRun"]

Deliver = Callable[..., object]
StopHook = Callable[[GuardError, bool], None]
VerdictHook = Callable[[Verdict], None]
#: ``call_later(delay, fn)`` on an adapter's loop, returning a function that cancels the call
CallLater = Callable[[float, Callable[[], None]], Callable[[], None]]

_runs: weakref.WeakSet[GuardedRun] = weakref.WeakSet()


def _deadline_future(
    source: concurrent.futures.Future[Reading], seconds: float
) -> concurrent.futures.Future[Reading]:
    """``source``, or a failed reading once ``seconds`` have passed without an answer."""
    if source.done():
        return source
    out: concurrent.futures.Future[Reading] = concurrent.futures.Future()

    def settle(reading: Reading) -> None:
        try:
            out.set_result(reading)
        except concurrent.futures.InvalidStateError:
            pass  # the other side won

    def expire() -> None:
        settle(Reading(None, ApiUnavailableError(f"The VastCap balance check gave no answer within {seconds:g} s.")))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.name = "vastcap-guard-deadline"

    def done(f: concurrent.futures.Future[Reading]) -> None:
        timer.cancel()
        if f.cancelled():
            expire()
        else:
            settle(f.result())

    timer.start()
    source.add_done_callback(done)
    return out


class GuardedRun:
    """One guarded job: its guard, its poller subscription, its verdicts and messages.

    Thread-safe. Readings are decided where ``deliver`` puts them (the poller thread when it is
    ``None``); ``on_stop`` is called once, where the stop was decided.
    """

    def __init__(
        self,
        config: GuardConfig,
        wording: Wording,
        *,
        logger: logging.Logger,
        on_stop: StopHook | None = None,
        on_verdict: VerdictHook | None = None,
        deliver: Deliver | None = None,
        on_fork: Callable[[], None] | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.config = config
        self.wording = wording
        self.guard = Guard(config)
        self.logger = logger
        self._on_stop = on_stop
        self._on_verdict = on_verdict
        self._deliver = deliver
        self._on_fork = on_fork
        self._client_factory = client_factory
        self._sub: Subscription | None = None
        self._cancel_pause_timer: Callable[[], None] | None = None
        self._lock = threading.Lock()
        #: the pre-flight verdict was taken (readings before it are the pre-flight's business)
        self.started = False
        self._closed = False
        self._stop_reported = False
        _runs.add(self)

    def __repr__(self) -> str:
        return f"GuardedRun(job={self.wording.job!r}, key={self.config.masked_key!r}, tripped={self.reason!r})"

    # -- state ---------------------------------------------------------------------------------
    @property
    def tripped(self) -> GuardError | None:
        """The error that stopped (or will stop) the job, if any."""
        return self.guard.tripped

    @property
    def reason(self) -> str | None:
        return self.guard.tripped.reason if self.guard.tripped else None

    @property
    def balance(self) -> Decimal | None:
        """The last balance read (USD)."""
        return self.guard.balance

    @property
    def forecast(self) -> Forecast:
        return self.guard.forecast

    @property
    def paused(self) -> bool:
        return self.guard.paused

    @property
    def running(self) -> bool:
        """Subscribed to the poller and not closed."""
        return self._sub is not None and not self._closed

    def snapshot(self) -> dict[str, object]:
        """Counters for stats and dashboards (money as Decimal, rates rounded for people)."""
        out = self.guard.snapshot()
        out["pauses"] = self.guard.pauses
        out["paused_seconds"] = round(self.guard.paused_seconds + self.guard.paused_for(), 1)
        return out

    def raise_if_stopped(self) -> None:
        error = self.guard.tripped
        if error is not None:
            raise error.with_traceback(None)

    # -- pre-flight ----------------------------------------------------------------------------
    def begin(self) -> concurrent.futures.Future[Reading] | None:
        """Pre-flight, first half: join the poller and ask for the first reading.

        Returns a future that completes within the check deadline, or ``None`` when the verdict
        needs no reading (no key configured, or a stop decided before: ``tripped`` says why).
        """
        if self.guard.preflight_error() is not None:
            return None
        self._sub = subscribe(self.config, self._from_poller, guard=self.guard,
                              client_factory=self._client_factory)
        return self.request(max_age=self.config.interval)

    def preflight(self, reading: Reading | None) -> Verdict | None:
        """Pre-flight, second half: decide on the first reading (``None``: what :meth:`begin`
        decided). A stop is reported (``on_stop(error, at_start=True)``) and ends the checks."""
        verdict = self.take(reading, preflight=True) if reading is not None else None
        self.started = True
        error = self.guard.tripped
        if error is not None:
            self.stop(error, at_start=True)
            self.leave()  # the verdict is final: no more checks
            return Verdict(Action.STOP, reading, error)
        return verdict

    def start_blocking(self) -> None:
        """The whole pre-flight, waiting in this thread; raises the :class:`GuardError` on a stop."""
        future = self.begin()
        self.preflight(future.result() if future is not None else None)
        self.raise_if_stopped()

    async def start_async(self) -> None:
        """The whole pre-flight on the running asyncio loop; raises the :class:`GuardError` on a stop."""
        future = self.begin()
        reading: Reading | None = None
        if future is not None:
            reading = await asyncio.wrap_future(future)
        self.preflight(reading)
        self.raise_if_stopped()

    def request(self, max_age: float | None) -> concurrent.futures.Future[Reading]:
        """A reading no older than ``max_age`` (``None``: a new one), as a future that completes
        within :attr:`GuardConfig.check_deadline` (with a failed reading if the poller is silent)."""
        sub = self._sub
        if sub is None:
            done: concurrent.futures.Future[Reading] = concurrent.futures.Future()
            done.set_result(Reading(None, ApiUnavailableError("The guard is not running.")))
            return done
        return _deadline_future(sub.check(max_age=max_age), self.config.check_deadline)

    # -- session starts ------------------------------------------------------------------------
    def admission(self) -> concurrent.futures.Future[Reading] | None:
        """May a new session (browser, context, page, driver) start? Raises the stop error if not.

        ``None``: admitted now, on the latest reading. A future: the poller has been quiet for
        longer than its interval and deadline (or never read): wait for it, then :meth:`admit`.
        """
        self.raise_if_stopped()
        sub = self._sub
        latest = sub.latest if sub is not None else None
        if sub is None:
            return None
        if latest is not None and latest.age <= self.config.interval + self.config.check_deadline:
            self.take(latest)
            self.raise_if_stopped()
            return None
        return self.request(max_age=self.config.interval)

    def admit(self, reading: Reading) -> None:
        self.take(reading)
        self.raise_if_stopped()

    def admit_blocking(self) -> None:
        future = self.admission()
        if future is not None:
            self.admit(future.result())

    async def admit_async(self) -> None:
        future = self.admission()
        if future is not None:
            self.admit(await asyncio.wrap_future(future))

    # -- readings ------------------------------------------------------------------------------
    def _from_poller(self, reading: Reading) -> None:
        """Poller thread: hand the reading to the adapter's loop (or decide here)."""
        if self._closed or not self.started:
            return
        deliver = self._deliver
        if deliver is None:
            self.take(reading)
            return
        try:
            deliver(self.take, reading)
        except RuntimeError:  # the loop is closed: the job is over
            pass

    def take(self, reading: Reading, *, preflight: bool = False) -> Verdict | None:
        """Decide on one reading and report the verdict (log lines, ``on_verdict``, ``on_stop``).

        Readings after a stop change nothing; a reading seen before returns ``None``.
        """
        if not preflight and (self.guard.tripped is not None or self._closed):
            return None
        verdict = self.guard.observe(reading)
        if verdict is None:
            return None
        self.report(verdict, preflight=preflight)
        return verdict

    def report(self, verdict: Verdict, *, preflight: bool = False) -> None:
        cfg, words, log = self.config, self.wording, self.logger
        if self._on_verdict is not None:
            self._on_verdict(verdict)
        reading = verdict.reading
        if verdict.action is Action.STOP:
            assert verdict.error is not None
            if not preflight:  # the pre-flight's stop is reported by preflight()
                self.stop(verdict.error)
            return
        if verdict.action is Action.PAUSE and verdict.error is not None:
            log.warning(words.paused(verdict.error, cfg, at_start=preflight, resume_at=self.guard.resume_balance))
        elif verdict.action is Action.RESUME and reading is not None:
            log.info(words.resumed(reading.balance, self.guard.last_pause_seconds))
        if reading is not None and reading.ok and reading.balance is not None and verdict.action is not Action.PAUSE:
            if preflight:
                log.info(words.started(cfg, reading.balance))
            else:
                log.debug("vastcap-guard: VastCap balance %s (spent %s during the %s).",
                          reading.balance, self.guard.spent, words.job)
        if verdict.forecast_low and verdict.forecast is not None:
            log.warning(words.forecast_low(verdict.forecast, reading.balance if reading else None, cfg))
        if verdict.action is Action.WARN and reading is not None and reading.balance is not None:
            log.warning(words.below_warning(reading.balance, cfg))
        elif verdict.action is Action.FAILED:
            error = verdict.error or ApiUnavailableError("getBalance gave no balance.")
            log.warning(words.check_failed(error, self.guard, preflight=preflight))

    # -- stopping ------------------------------------------------------------------------------
    def stop(self, error: GuardError, *, at_start: bool = False) -> GuardError:
        """Trip the guard (the first stop wins), report it once (one ERROR line) and call
        ``on_stop``. Returns the error that stops the job."""
        error = self.guard.trip(error)
        with self._lock:
            first = not self._stop_reported
            self._stop_reported = True
        if first:
            self.logger.error(self.wording.stopped(error, self.config, at_start=at_start or not self.started))
            if self._on_stop is not None:
                self._on_stop(error, at_start or not self.started)
        return error

    def expire_pause(self) -> GuardError | None:
        """Pause mode: stop the job if its pause outlived ``pause_timeout`` (a timer's check)."""
        error = self.guard.expire_pause()
        if error is not None:
            self.stop(error)
        return error

    def arm_pause_timer(self, call_later: CallLater) -> None:
        """Pause mode: stop the job when the pause outlives ``pause_timeout``, readings or not.

        ``call_later(delay, fn)`` runs ``fn`` on the adapter's loop after ``delay`` seconds and
        returns a function that cancels it. Call it when a pause begins; :meth:`cancel_pause_timer`
        when it ends (resume, stop, the job closing)."""
        self.cancel_pause_timer()

        def fire() -> None:
            self._cancel_pause_timer = None
            if self.paused and self.tripped is None and self.expire_pause() is None:
                self.arm_pause_timer(call_later)  # not quite yet (clocks): look again

        left = max(0.0, self.config.pause_timeout - self.guard.paused_for())
        self._cancel_pause_timer = call_later(left + 0.01, fire)

    def cancel_pause_timer(self) -> None:
        cancel, self._cancel_pause_timer = self._cancel_pause_timer, None
        if cancel is not None:
            cancel()

    # -- spending ------------------------------------------------------------------------------
    def needs_reading(self) -> bool:
        """No balance was ever read (the API was down at start): spend needs a fresh reading."""
        return self.guard.balance is None and self.started and self.running

    def ensure_funds(self, cost: object) -> Decimal:
        """Account for ``cost`` USD about to be spent; return the projected balance.

        Raises (and stops the job with) the :class:`GuardError` when the account cannot pay: low
        balance, spend cap, a bad cost, a stop decided before. Raises
        :class:`ApiUnavailableError` without stopping when no balance was read yet (API failures
        follow the failure policy); read one first where :meth:`needs_reading` says so.

        Pause mode: a balance too low for ``cost`` pauses the job instead (:meth:`pause_for_spend`)
        and raises the :class:`LowBalanceError` without stopping; :attr:`paused` is then true, and
        the caller may wait for the resume and try again.
        """
        try:
            amount = parse_cost(cost)
        except ConfigError as exc:
            raise self.stop(exc) from None
        if self.guard.tripped is not None:
            raise self.stop(self.guard.tripped)
        try:
            return self.reserve(amount)
        except ApiUnavailableError:
            if self.guard.tripped is not None:
                raise self.stop(self.guard.tripped) from None
            raise
        except LowBalanceError as exc:
            if self.guard.pausing and self.guard.tripped is None:
                raise  # reserve() paused the job
            raise self.stop(exc) from None
        except GuardError as exc:
            raise self.stop(exc) from None

    def reserve(self, amount: Decimal) -> Decimal:
        """Reserve ``amount`` USD, refusing without stopping the job: the :class:`GuardError` is
        raised for the adapter to decide (a request dropped, a job stopped). In pause mode a
        :class:`LowBalanceError` pauses the job first (:meth:`pause_for_spend`)."""
        try:
            return self.guard.reserve(amount)
        except LowBalanceError as exc:
            if self.guard.pausing and self.guard.tripped is None:
                self.pause_for_spend(exc, amount)
            raise

    def pause_for_spend(self, error: LowBalanceError, cost: Decimal) -> Verdict | None:
        """Pause mode: the balance cannot pay a spend of ``cost`` (``error`` says why): pause the
        job and report it (the WARNING line, ``on_verdict``) as a reading below the minimum would.
        The job resumes at the first reading that shows the balance can pay for it. Returns the
        PAUSE verdict, or ``None`` when the job was already paused (or stopped, or not pausing)."""
        verdict = self.guard.pause_for_spend(error, cost)
        if verdict is not None:
            self.report(verdict)
        return verdict

    def ensure_funds_blocking(self, cost: object) -> Decimal:
        if self.needs_reading():
            self.take(self.request(max_age=None).result())
        return self.ensure_funds(cost)

    async def ensure_funds_async(self, cost: object) -> Decimal:
        if self.needs_reading():
            self.take(await asyncio.wrap_future(self.request(max_age=None)))
        return self.ensure_funds(cost)

    def release(self, cost: object) -> None:
        """A spend reserved by :meth:`ensure_funds` will not happen (its request was dropped)."""
        try:
            self.guard.release(parse_cost(cost))
        except ConfigError:
            pass

    def closing_reading(self) -> concurrent.futures.Future[Reading] | None:
        """At the end of a job that reserved spend no reading shows yet: a fresh reading, so the
        spend counted matches what the account was charged. ``None`` when none is needed."""
        if not self.running or not self.started or self.guard.pending_spend <= 0:
            return None
        return self.request(max_age=None)

    def settle(self, reading: Reading) -> None:
        """Take the closing reading into the counters (balance, spent) without a verdict."""
        self.guard.account(reading)

    # -- leaving -------------------------------------------------------------------------------
    def leave(self, wait: float = 0.0) -> threading.Thread | None:
        """Leave the poller (the last job of an account stops its thread). Idempotent.

        Returns the poller thread when it is ending (join it, or poll ``is_alive()`` from async
        code), else ``None``.
        """
        sub, self._sub = self._sub, None
        if sub is None:
            return None
        return sub.close(wait=wait)

    def close(self, wait: float = 0.0) -> threading.Thread | None:
        """The job ended: no reading is taken any more, and the poller is left."""
        self._closed = True
        return self.leave(wait=wait)

    def summary(self) -> str:
        return self.wording.summary(self.guard)

    # -- fork ----------------------------------------------------------------------------------
    def _after_fork(self) -> None:
        """In a forked child: the parent's loop does not run here, so readings are decided in the
        child's poller thread; the adapter forgets what belonged to the parent."""
        self._lock = threading.Lock()
        self._deliver = None
        self.guard.after_fork()
        if self._on_fork is not None:
            try:
                self._on_fork()
            except Exception:
                logging.getLogger("vastcap_guard").debug("after-fork hook failed", exc_info=True)


def _after_fork_in_child() -> None:
    for run in list(_runs):
        run._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
