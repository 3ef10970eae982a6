"""Prometheus metrics: the account's balance, spend rate, time left and checks.

Two ways to get them (``pip install "vastcap-guard[metrics]"``, which installs prometheus-client):

- ``vastcap-guard watch --metrics-port 9464`` serves ``/metrics`` for one account while it watches
  (:func:`serve` is what it uses);
- a process that already exposes Prometheus metrics registers a :class:`VastcapCollector` for its
  guard (a Scrapy crawl's ``get_guard(crawler)``, a Playwright ``guard()`` object, a
  :class:`~vastcap_guard.run.GuardedRun` or a :class:`~vastcap_guard.Guard`)::

      from prometheus_client import REGISTRY
      from vastcap_guard.metrics import VastcapCollector

      REGISTRY.register(VastcapCollector(source))

Every sample carries the masked key as its ``key`` label (``vc_…9f3a``), never the key. This
module imports prometheus-client and the core, never Scrapy, Twisted or Playwright.
See ``docs/operations.md`` (section Prometheus).
"""

from __future__ import annotations

import math
import re
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .config import GuardConfig
from .guard import Guard
from .scope import RunState

__all__ = ["METRICS", "MetricsServer", "VastcapCollector", "serve"]

#: every metric name as it appears in the exposition -> (type, help text)
METRICS: dict[str, tuple[str, str]] = {
    "vastcap_up": ("gauge", "1 when the last balance check succeeded, else 0."),
    "vastcap_balance_usd": ("gauge", "The last VastCap balance read (USD)."),
    "vastcap_spend_per_minute_usd": (
        "gauge", "Estimated spend per minute (USD); absent while the forecast is unknown."),
    "vastcap_minutes_left": (
        "gauge", "Minutes until the balance reaches the minimum at the current spend; "
                 "+Inf when nothing is being spent, absent while the forecast is unknown."),
    "vastcap_checks_total": ("counter", "Balance checks taken into account."),
    "vastcap_check_failures_total": ("counter", "Balance checks that failed (after the client's retries)."),
}

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _guard_of(source: object) -> Guard | None:
    """The :class:`Guard` behind ``source`` right now (``None``: a guard object not run yet)."""
    if isinstance(source, Guard):
        return source
    guard = getattr(source, "guard", None)  # GuardedRun, the Scrapy BalanceGuard
    if isinstance(guard, Guard):
        return guard
    if isinstance(source, RunState):  # a Playwright, Selenium or Crawlee guard: its current (or last) run
        run = source._latest_run()
        return run.guard if run is not None else None
    raise TypeError(
        f"VastcapCollector cannot read a {type(source).__name__}: give it a Guard, a GuardedRun, "
        "the Scrapy get_guard(crawler) or the object a Playwright, Selenium or Crawlee guard returns."
    )


def _config_of(source: object) -> GuardConfig:
    config = getattr(source, "config", None)
    if isinstance(config, GuardConfig):
        return config
    guard = _guard_of(source)
    if guard is None:  # pragma: no cover - every source without a guard has a config
        raise TypeError(f"{type(source).__name__} has no VastCap configuration")
    return guard.config


class _Source:
    """One registered source: a weak reference to it (the collector does not keep a crawl or a
    script alive) and the labels of its samples."""

    def __init__(self, source: object, labels: dict[str, str]) -> None:
        self.labels = labels
        self.ident = id(source)
        try:
            self._ref: Callable[[], object | None] = weakref.ref(source)
        except TypeError:
            self._ref = lambda: source

    def get(self) -> object | None:
        return self._ref()


class VastcapCollector:
    """A prometheus-client custom collector for one or more guards.

    ``source`` is a :class:`~vastcap_guard.Guard`, a :class:`~vastcap_guard.run.GuardedRun`, the
    Scrapy ``get_guard(crawler)`` or a Playwright ``guard()`` object (its current run, or its last
    one once the run ended; each run starts its counters from zero). ``labels`` are extra
    constant labels for its samples (``{"spider": "books"}``); the ``key`` label (the masked key)
    is always there.

    Register the collector once per registry (``REGISTRY.register(collector)``); more sources go
    into the same collector with :meth:`add`, each with labels that tell it apart. The collector
    does not keep its sources alive: a source that was garbage-collected is left out.
    """

    def __init__(self, source: object | None = None, *, labels: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._sources: list[_Source] = []
        if source is not None:
            self.add(source, labels=labels)
        elif labels:
            raise ValueError("labels= belongs to a source: VastcapCollector(source, labels=...)")

    def __repr__(self) -> str:
        with self._lock:
            keys = [s.labels["key"] for s in self._sources if s.get() is not None]
        return f"VastcapCollector(keys={keys!r})"

    def add(self, source: object, *, labels: Mapping[str, str] | None = None) -> None:
        """Collect ``source`` too. Raises ``ValueError`` when another live source already has the
        same labels (two series would clash): give one of them a distinguishing label."""
        extra = dict(labels or {})
        for name, value in extra.items():
            if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__") or name == "key":
                raise ValueError(f"{name!r} cannot be a label name here (letters, digits and _; not 'key')")
            if not isinstance(value, str):
                raise ValueError(f"the value of label {name!r} must be a string, not {type(value).__name__}")
        _guard_of(source)  # a TypeError now rather than at scrape time
        entry = _Source(source, {"key": _config_of(source).masked_key, **dict(sorted(extra.items()))})
        with self._lock:
            self._sources = [s for s in self._sources if s.get() is not None]
            if self._sources and list(self._sources[0].labels) != list(entry.labels):
                raise ValueError(
                    f"every source of one collector has the same label names: {list(self._sources[0].labels)!r}, "
                    f"not {list(entry.labels)!r}"
                )
            if any(s.labels == entry.labels for s in self._sources):
                raise ValueError(
                    f"a source with the labels {entry.labels!r} is already collected: "
                    "give each source a label that tells it apart, e.g. labels={'spider': name}"
                )
            self._sources.append(entry)

    def remove(self, source: object) -> None:
        """Stop collecting ``source`` (no error if it was not collected)."""
        with self._lock:
            self._sources = [s for s in self._sources if s.ident != id(source) or s.get() is not source]

    # -- the custom-collector protocol -----------------------------------------------------------
    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (lets a registry refuse a clashing collector)."""
        return iter(self._families([]))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            live = [(entry, obj) for entry in self._sources if (obj := entry.get()) is not None]
        return iter(self._families(live))

    def _families(self, live: list[tuple[_Source, object]]) -> list[Metric]:
        label_names = list(live[0][0].labels) if live else ["key"]
        families: list[CounterMetricFamily | GaugeMetricFamily] = []
        for name, (kind, doc) in METRICS.items():
            if kind == "counter":  # named without _total: prometheus-client appends it to the sample
                families.append(CounterMetricFamily(name.removesuffix("_total"), doc, labels=label_names))
            else:
                families.append(GaugeMetricFamily(name, doc, labels=label_names))
        for entry, obj in live:
            label_values = [entry.labels[n] for n in label_names]
            values = _values(_guard_of(obj))
            for fam, name in zip(families, METRICS, strict=True):
                value = values.get(name)
                if value is not None:
                    fam.add_metric(label_values, value)
        return list(families)


def _values(guard: Guard | None) -> dict[str, float | None]:
    """What one guard shows now (``None``: no sample)."""
    if guard is None:  # a Playwright guard that has not run yet
        return {"vastcap_up": 0.0, "vastcap_checks_total": 0.0, "vastcap_check_failures_total": 0.0}
    last = guard.last_reading
    balance = guard.balance
    forecast = guard.forecast
    minutes: float | None = None
    if forecast.state == "no_spend":
        minutes = math.inf
    elif forecast.minutes_left is not None:
        minutes = float(forecast.minutes_left)
    return {
        "vastcap_up": 1.0 if last is not None and last.ok else 0.0,
        "vastcap_balance_usd": float(balance) if balance is not None else None,
        "vastcap_spend_per_minute_usd": (float(forecast.spend_per_minute)
                                         if forecast.spend_per_minute is not None else None),
        "vastcap_minutes_left": minutes,
        "vastcap_checks_total": float(guard.checks),
        "vastcap_check_failures_total": float(guard.check_failures),
    }


# -- the exporter behind `watch --metrics-port` --------------------------------------------------
class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not news


class MetricsServer:
    """``/metrics`` over HTTP, served from a daemon thread (other paths: 404)."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = registry
        self.host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Bind and serve. Raises ``OSError`` when the address cannot be used (port in use...)."""
        if self._server is not None:
            return self
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"vastcap-guard serves Prometheus metrics on /metrics\n"]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        family = socket.getaddrinfo(self.host, self._port, 0, socket.SOCK_STREAM)[0][0]
        server_class = type("_Server", (_ThreadingServer,), {"address_family": family})
        self._server = make_server(self.host, self._port, app, server_class, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="vastcap-metrics", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(source: object, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Serve ``source``'s metrics (a :class:`VastcapCollector`, or anything it accepts) on
    ``http://host:port/metrics``, in a registry of their own. Raises ``OSError`` when the address
    cannot be used."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(source if isinstance(source, VastcapCollector) else VastcapCollector(source))
    return MetricsServer(registry, host, port).start()
