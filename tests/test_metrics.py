"""Prometheus metrics: ``vastcap-guard watch --metrics-port`` scraped over HTTP while it watches a
sandbox, and ``VastcapCollector`` on a Guard, a GuardedRun, a Playwright guard and a real crawl."""

from __future__ import annotations

import gc
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from core_keys import KEY, LOW_KEY
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vastcap_guard import Guard, GuardConfig, Reading, mask_key
from vastcap_guard.errors import ApiUnavailableError
from vastcap_guard.metrics import METRICS, VastcapCollector, serve
from vastcap_guard.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "vastcap_guard.cli"]
MASKED = mask_key(KEY)


# -- reading an exposition -------------------------------------------------------------------------
class Scrape:
    """One parsed /metrics answer."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    @property
    def names(self) -> set[str]:
        """Metric names as exposed (counters with their _total)."""
        return {f"{f.name}_total" if f.type == "counter" else f.name for f in self.families.values()}

    def samples(self, name: str) -> list[Any]:
        return [s for f in self.families.values() for s in f.samples if s.name == name]

    def value(self, name: str) -> float | None:
        """The value of the one sample called ``name`` (``None``: no sample)."""
        found = self.samples(name)
        assert len(found) <= 1, found
        return found[0].value if found else None


def wait_for(scrape: Callable[[], Scrape], predicate: Callable[[Scrape], bool], what: str,
             deadline: float = 30.0) -> Scrape:
    """Scrape until ``predicate`` holds (the deadline only bounds a failing test)."""
    end = time.monotonic() + deadline
    while True:
        s = scrape()
        if predicate(s):
            return s
        assert time.monotonic() < end, f"never saw {what}; last scrape:\n{s.text}"
        time.sleep(0.1)


def env_for(key: str, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VASTCAP_")}
    env.update(VASTCAP_API_KEY=key, VASTCAP_API_URL=url)
    return env


class Watch:
    """``vastcap-guard watch --metrics-port 0 ...`` in a subprocess; the URL comes from its stderr."""

    def __init__(self, key: str, url: str, *args: str) -> None:
        self.proc = subprocess.Popen([*CLI, "watch", "--metrics-port", "0", *args], env=env_for(key, url),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        m = re.fullmatch(r"vastcap-guard: serving Prometheus metrics on (http://\S+/metrics)\n", first)
        assert m, first
        self.url = m.group(1)
        self.bodies: list[str] = []

    def scrape(self) -> Scrape:
        r = requests.get(self.url, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        self.bodies.append(r.text)
        return Scrape(r.text)

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        # not communicate(): it reads the pipes' file descriptors, and would miss what the first
        # readline() above already buffered (the pre-flight's error line often comes with it)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.wait(timeout=30)
        return self.proc.returncode, self.proc.stdout.read(), self.proc.stderr.read()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.communicate(timeout=30)


def collector_names() -> set[str]:
    registry = CollectorRegistry()
    registry.register(VastcapCollector(Guard(GuardConfig.build(KEY))))
    return Scrape(generate_latest(registry).decode()).names


# -- watch --metrics-port -------------------------------------------------------------------------
def test_watch_metrics_follow_the_balance_and_the_checks(sandbox: Sandbox, watches: list[Watch]) -> None:
    w = Watch(KEY, sandbox.url, "--interval", "0.2", "--max-failures", "0", "--timeout", "1")
    watches.append(w)
    first = wait_for(w.scrape, lambda s: s.value("vastcap_balance_usd") == 10.25, "the balance $10.25")
    assert first.value("vastcap_up") == 1
    # every metric family is listed, and they are the collector's own
    assert first.names == set(METRICS) == collector_names()
    checks = first.value("vastcap_checks_total")
    assert checks is not None and checks >= 1

    sandbox.set_balance(KEY, "7.5")
    moved = wait_for(w.scrape, lambda s: s.value("vastcap_balance_usd") == 7.5, "the balance follow a change")
    assert (moved.value("vastcap_checks_total") or 0) > checks
    assert moved.value("vastcap_check_failures_total") == 0

    sandbox.fault("getBalance", "html")
    down = wait_for(w.scrape, lambda s: s.value("vastcap_up") == 0, "vastcap_up 0 while checks fail")
    assert (down.value("vastcap_check_failures_total") or 0) >= 1
    assert down.value("vastcap_balance_usd") == 7.5  # the last balance read stays
    sandbox.clear_faults()
    wait_for(w.scrape, lambda s: s.value("vastcap_up") == 1, "vastcap_up 1 again")

    code, out, err = w.stop()
    assert code == 0, err
    assert out.count("balance $") >= 3  # the watch lines go on as before
    for body in w.bodies:
        assert KEY not in body
        for fam in text_string_to_metric_families(body):
            assert all(s.labels == {"key": MASKED} for s in fam.samples)
    assert KEY not in out + err


def test_watch_metrics_forecast_unknown_then_no_spend(sandbox: Sandbox, watches: list[Watch]) -> None:
    # one reading, the next one 30 s away: the forecast is unknown, so neither rate nor time left
    slow = Watch(KEY, sandbox.url, "--interval", "30")
    watches.append(slow)
    s = wait_for(slow.scrape, lambda s: s.value("vastcap_balance_usd") is not None, "the first balance")
    assert s.samples("vastcap_minutes_left") == [] and s.samples("vastcap_spend_per_minute_usd") == []
    assert "vastcap_minutes_left" in s.families  # the family is described, without a sample
    assert slow.stop()[0] == 0

    # a flat balance over a few readings: nothing is spent, the money lasts for ever
    fast = Watch(KEY, sandbox.url, "--interval", "0.2")
    watches.append(fast)
    s = wait_for(fast.scrape, lambda s: s.value("vastcap_minutes_left") is not None, "a forecast")
    assert s.value("vastcap_minutes_left") == math.inf and s.value("vastcap_spend_per_minute_usd") == 0
    assert fast.stop()[0] == 0


def test_watch_metrics_while_spending(sandbox: Sandbox, watches: list[Watch]) -> None:
    stop = threading.Event()

    def spend() -> None:
        balance = Decimal("10")
        while not stop.wait(0.1):
            balance -= Decimal("0.01")
            sandbox.set_balance(KEY, balance)

    t = threading.Thread(target=spend)
    t.start()
    try:
        w = Watch(KEY, sandbox.url, "--interval", "0.2")
        watches.append(w)
        s = wait_for(w.scrape, lambda s: (s.value("vastcap_spend_per_minute_usd") or 0) > 0, "a spend rate")
    finally:
        stop.set()
        t.join()
    left = s.value("vastcap_minutes_left")
    assert left is not None and 0 < left < math.inf
    assert w.stop()[0] == 0


def test_watch_with_metrics_keeps_the_exit_codes_of_check(sandbox: Sandbox, watches: list[Watch]) -> None:
    w = Watch(LOW_KEY, sandbox.url, "--interval", "0.2")
    watches.append(w)
    w.proc.wait(60)  # it exits on its own, at the pre-flight
    code, out, err = w.stop()
    assert code == 10 and "vastcap_low_balance" in err and LOW_KEY not in out + err


def test_metrics_are_served_on_loopback_by_default(sandbox: Sandbox, watches: list[Watch]) -> None:
    w = Watch(KEY, sandbox.url, "--interval", "30")
    watches.append(w)
    assert w.url.startswith("http://127.0.0.1:")
    port = int(w.url.rsplit(":", 1)[1].split("/")[0])
    tcp = Path("/proc/net/tcp")
    if tcp.exists():  # the listening socket is bound to 127.0.0.1, not to every interface
        listening = [line.split()[1] for line in tcp.read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
        assert listening == [f"0100007F:{port:04X}"]
    # /metrics only
    assert requests.get(w.url.replace("/metrics", "/"), timeout=10).status_code == 404
    assert w.stop()[0] == 0


def test_metrics_port_in_use_exits_2_with_a_clear_message(sandbox: Sandbox) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = subprocess.run([*CLI, "watch", "--metrics-port", str(port)], env=env_for(KEY, sandbox.url),
                           capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == (
        f"vastcap-guard: vastcap_config_error: cannot serve metrics on 127.0.0.1 port {port}: Address already "
        "in use. Choose another --metrics-port (or --metrics-host)."
    )
    assert sandbox.call_count("getBalance") == 0  # refused before any check


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--metrics-port", "70000"], "--metrics-port 70000 is not a TCP port"),
        (["--metrics-host", "127.0.0.1"], "--metrics-host needs --metrics-port"),
        (["--metrics-port", "0", "--metrics-host", "no-such-host.invalid"], "--metrics-host 'no-such-host.invalid'"),
    ],
)
def test_bad_metrics_options_exit_2(sandbox: Sandbox, args: list[str], needle: str) -> None:
    p = subprocess.run([*CLI, "watch", *args], env=env_for(KEY, sandbox.url), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr


# -- VastcapCollector -----------------------------------------------------------------------------
def registry_of(collector: VastcapCollector) -> Callable[[], Scrape]:
    registry = CollectorRegistry()
    registry.register(collector)
    return lambda: Scrape(generate_latest(registry).decode())


def test_collector_on_a_guard_shows_exact_values() -> None:
    guard = Guard(GuardConfig.build(KEY, min_balance="0.5"))
    scrape = registry_of(VastcapCollector(guard))
    s = scrape()
    assert s.names == set(METRICS)
    assert s.value("vastcap_up") == 0 and s.value("vastcap_checks_total") == 0
    assert s.value("vastcap_balance_usd") is None and s.value("vastcap_minutes_left") is None
    # $0.01 a minute, a reading a minute: after three readings the forecast is known
    for i in range(4):
        guard.observe(Reading(Decimal("10.50") - Decimal("0.01") * i, monotonic=1000.0 + 60 * i))
    s = scrape()
    assert s.value("vastcap_up") == 1 and s.value("vastcap_checks_total") == 4
    assert s.value("vastcap_balance_usd") == 10.47
    assert s.value("vastcap_spend_per_minute_usd") == pytest.approx(0.01)
    assert s.value("vastcap_minutes_left") == pytest.approx((10.47 - 0.5) / 0.01)
    guard.observe(Reading(None, ApiUnavailableError("down"), monotonic=1300.0))
    s = scrape()
    assert s.value("vastcap_up") == 0 and s.value("vastcap_check_failures_total") == 1
    assert s.value("vastcap_checks_total") == 5 and s.value("vastcap_balance_usd") == 10.47
    assert KEY not in s.text and s.samples("vastcap_up")[0].labels == {"key": MASKED}


def test_collector_sources_labels_and_lifetime() -> None:
    import logging

    from vastcap_guard.run import GuardedRun
    from vastcap_guard.wording import Wording

    run = GuardedRun(GuardConfig.build(KEY), Wording(job="test"), logger=logging.getLogger("test"))
    other = Guard(GuardConfig.build(LOW_KEY))
    collector = VastcapCollector(run, labels={"job_name": "a"})
    collector.add(other, labels={"job_name": "b"})
    scrape = registry_of(collector)
    ups = {s.labels["job_name"]: s.labels["key"] for s in scrape().samples("vastcap_up")}
    assert ups == {"a": MASKED, "b": mask_key(LOW_KEY)}
    assert KEY not in repr(collector) and LOW_KEY not in repr(collector)

    with pytest.raises(ValueError, match="already collected"):
        collector.add(Guard(GuardConfig.build(KEY)), labels={"job_name": "a"})
    with pytest.raises(ValueError, match="same label names"):
        collector.add(Guard(GuardConfig.build(KEY)))
    with pytest.raises(ValueError, match="label name"):
        VastcapCollector(other, labels={"key": "x"})
    with pytest.raises(TypeError, match="cannot read"):
        VastcapCollector(object())

    collector.remove(run)
    assert [s.labels["job_name"] for s in scrape().samples("vastcap_up")] == ["b"]
    del other
    gc.collect()
    assert scrape().samples("vastcap_up") == []  # the collector keeps no source alive


def test_one_registry_refuses_a_second_collector() -> None:
    registry = CollectorRegistry()
    registry.register(VastcapCollector(Guard(GuardConfig.build(KEY))))
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(VastcapCollector(Guard(GuardConfig.build(LOW_KEY))))


def test_collector_on_a_playwright_guard(sandbox: Sandbox) -> None:
    from vastcap_guard.playwright import guard

    g = guard(api_key=KEY, api_url=sandbox.url, interval=60)
    with serve(g) as server:  # scraped from the server's thread, as Prometheus would
        def scrape() -> Scrape:
            return Scrape(requests.get(server.url, timeout=10).text)

        before = scrape()
        assert before.value("vastcap_up") == 0 and before.value("vastcap_balance_usd") is None
        with g:
            during = scrape()
            assert during.value("vastcap_balance_usd") == 10.25 and during.value("vastcap_up") == 1
            assert during.value("vastcap_checks_total") == 1
        after = scrape()  # the last run's values stay
        assert after.value("vastcap_balance_usd") == 10.25
        assert after.samples("vastcap_up")[0].labels == {"key": MASKED}
        assert KEY not in before.text + during.text + after.text


@pytest.mark.slow
def test_collector_in_a_real_crawl_with_the_documented_extension(sandbox: Sandbox) -> None:
    page = f"{sandbox.base_url}/_sandbox/health"  # any page will do: the spider reads the registry
    p = subprocess.run([sys.executable, str(REPO / "tests" / "metrics_crawl.py"), page],
                       env=env_for(KEY, sandbox.url), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["finish_reason"] == "finished"
    during = Scrape(out["during"])
    assert set(METRICS) <= during.names
    labels = {"key": MASKED, "spider": "metrics_probe"}
    assert [s.labels for s in during.samples("vastcap_balance_usd")] == [labels]
    assert during.value("vastcap_balance_usd") == 10.25 and during.value("vastcap_up") == 1
    assert (during.value("vastcap_checks_total") or 0) >= 1
    assert Scrape(out["after"]).samples("vastcap_up") == []  # the closed crawl left the collector
    assert KEY not in p.stdout + p.stderr


def test_the_extension_in_the_docs_is_the_example_file() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    code = (REPO / "examples" / "scrapy_metrics_extension.py").read_text()
    body = code.split('"""', 2)[2].strip()  # without its docstring
    assert body in doc


# -- docs/operations.md ---------------------------------------------------------------------------
def prometheus_section() -> str:
    doc = (REPO / "docs" / "operations.md").read_text()
    start = doc.index("\n## Prometheus\n")
    end = doc.find("\n## ", start + 1)
    return doc[start:] if end < 0 else doc[start:end]


def test_the_documented_scrape_config_and_alerts_parse_and_use_real_metrics() -> None:
    import yaml

    blocks = re.findall(r"```yaml\n(.*?)```", prometheus_section(), re.S)
    docs = [yaml.safe_load(b) for b in blocks]
    scrape = next(d for d in docs if "scrape_configs" in d)
    job = scrape["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] and job.get("metrics_path", "/metrics") == "/metrics"
    rules_doc = next(d for d in docs if "groups" in d)
    rules = [r for g in rules_doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"VastcapBalanceLow", "VastcapMinutesLeftLow"}
    used: set[str] = set()
    for r in rules:
        assert r["expr"] and r["annotations"]["summary"]
        used |= set(re.findall(r"\bvastcap_[a-z_]+", r["expr"]))
    assert {"vastcap_balance_usd", "vastcap_minutes_left"} <= used <= set(METRICS)


def test_the_documented_metric_table_lists_every_metric() -> None:
    section = prometheus_section()
    listed = set(re.findall(r"^\| `(vastcap_[a-z_]+)`", section, re.M))
    assert listed == set(METRICS)
