"""vastcap-guard benchmarks: ``python bench/run.py [--quick] [--only NAME[,NAME...]]``.

Everything runs on loopback: the VastCap sandbox, local sites (``vastcap_guard.site.LocalSite``,
2,000 linked pages), a throwaway ``redis-server``, and real Scrapy crawls / real Chromium in child
processes. Every figure is a ratio or a count measured side by side in the same run; each is the
median of several runs (at least 3 in a full run). Results go to ``bench/results/<full|quick>.json``
and ``.md``; the exit status is 1 when a target is missed (2 when a benchmark could not run).

Benchmarks (``--only`` names): ``overhead`` (crawl overhead, naive baseline, event-loop lag),
``stop``, ``preflight``, ``sharing`` (Scrapy and Playwright), ``import``, ``fleet``, ``handover``,
``selenium`` (a Selenium script's run time with and without the guard, and its stop latency),
``pwstarts`` (Playwright session starts: a new context and page per page load, guarded against unguarded),
``crawlee`` (the Crawlee integration's run time and stop latency).
See docs/benchmarks.md for what each one measures and why.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from vastcap_guard import BalanceClient  # noqa: E402
from vastcap_guard.sandbox import LocalRedis, Sandbox  # noqa: E402
from vastcap_guard.site import LocalSite  # noqa: E402

KEY = "vc_bench_ACCOUNT_k3y_0000000000001"
LATENCY = 0.3  # sandbox getBalance latency (s)
INTERVAL = 0.5  # guard check interval (s)
SITE_PAGES = 2000
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

BENCHMARKS = ("overhead", "stop", "preflight", "sharing", "import", "fleet", "handover", "selenium", "pwstarts",
              "crawlee")
FULL_RUNS = {"overhead": 5, "stop": 5, "preflight": 3, "sharing": 3, "import": 5, "fleet": 3, "handover": 3,
             "selenium": 5, "pwstarts": 5, "crawlee": 5}
QUICK_RUNS = {"overhead": 3, "stop": 3, "preflight": 1, "sharing": 1, "import": 3, "fleet": 1, "handover": 1,
              "selenium": 3, "pwstarts": 3, "crawlee": 3}


# -- results ----------------------------------------------------------------------------------
@dataclass
class Figure:
    bench: str
    name: str
    value: float | int | None
    unit: str = ""
    target: str = ""
    met: bool | None = None  # None: reported, no target
    runs: list[Any] = field(default_factory=list)
    note: str = ""


class Results:
    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.details: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def add(self, *args: Any, **kw: Any) -> Figure:
        f = Figure(*args, **kw)
        self.figures.append(f)
        mark = {True: "ok", False: "MISSED", None: "--"}[f.met]
        val = "n/a" if f.value is None else f"{f.value:g}" if isinstance(f.value, float) else str(f.value)
        print(f"  [{mark:>6}] {f.bench}: {f.name} = {val}{f.unit}  {f.target}", flush=True)
        return f

    @property
    def missed(self) -> list[Figure]:
        return [f for f in self.figures if f.met is False]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# -- infrastructure -----------------------------------------------------------------------------
def quiet(server_owner: Any) -> None:
    """Connections reset by a crawl at its end are not worth a traceback on stderr."""
    server = getattr(server_owner, "_server", None)
    if server is not None:
        server.handle_error = lambda request, client_address: None


@contextlib.contextmanager
def sandbox(accounts: dict[str, str] | None = None, latency: float = LATENCY, **kw: Any) -> Iterator[Sandbox]:
    with Sandbox(accounts or {KEY: "10"}, **kw) as sb:
        quiet(sb)
        if latency:
            sb.fault("getBalance", "latency", delay=latency)
        yield sb


@contextlib.contextmanager
def sites(n: int, pages: int = SITE_PAGES, delay: float = 0.05) -> Iterator[list[LocalSite]]:
    started = [LocalSite(pages=pages, delay=delay).start() for _ in range(n)]
    for s in started:
        quiet(s)
    try:
        yield started
    finally:
        for s in started:
            s.stop()


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    with LocalRedis(str(tmp)) as redis:
        yield redis.url


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("VASTCAP_API_KEY", None)
    env.pop("VASTCAP_API_URL", None)
    return env


class Crawl:
    """``bench/crawl_worker.py`` in a child process."""

    def __init__(self, tmp: Path, name: str, config: dict[str, Any]) -> None:
        config = {"log_file": str(tmp / f"{name}-{time.monotonic_ns()}.log"), **config}
        self.log_file = Path(config["log_file"])
        self.proc = subprocess.Popen([sys.executable, str(HERE / "crawl_worker.py"), json.dumps(config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())

    def result(self, timeout: float = 300) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise RuntimeError("a benchmark crawl did not finish in time") from None
        if self.proc.returncode != 0 or not out.strip():
            log = self.log_file.read_text()[-3000:] if self.log_file.exists() else ""
            raise RuntimeError(f"crawl worker failed ({self.proc.returncode}):\n{err[-3000:]}\n{log}")
        return dict(json.loads(out.strip().splitlines()[-1]))


def site_rate(site: LocalSite) -> tuple[int, float, float]:
    """(pages, pages/s between the first and last page request, time.time() of the first)."""
    reqs = [r for r in site.requests if r.path.startswith("/page/")]
    if len(reqs) < 2:
        return len(reqs), 0.0, reqs[0].at if reqs else 0.0
    span = reqs[-1].monotonic - reqs[0].monotonic
    return len(reqs), (len(reqs) - 1) / span, reqs[0].at


def crawl_settings(concurrency: int) -> dict[str, Any]:
    return {"CONCURRENT_REQUESTS": concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency}


# -- 1-3: crawl overhead, naive baseline, event-loop lag ------------------------------------------
def bench_overhead(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    """No guard and guard side by side (two crawls at once, each on its own 2,000-page site), then the naive one."""
    pagecount = 300 if quick else 0  # 0: the whole site
    naive_pages = 120 if quick else 400
    rounds: list[dict[str, Any]] = []
    with sandbox() as sb, sites(3) as site_list:
        by_mode = dict(zip(("none", "guard", "naive"), site_list, strict=True))

        def start(mode: str, limit: int) -> Crawl:
            site = by_mode[mode]
            site.reset()
            settings = crawl_settings(4)
            if limit:
                settings["CLOSESPIDER_PAGECOUNT"] = limit
            return Crawl(tmp, f"overhead-{mode}", {
                "guard": mode, "key": KEY, "api_url": sb.url, "interval": INTERVAL, "lag": True,
                "settings": settings, "crawlers": [{"url": site.url}]})

        def collect(mode: str, crawl: Crawl) -> dict[str, Any]:
            whole = crawl.result()
            out = whole["crawlers"][0]
            pages, rate, first_at = site_rate(by_mode[mode])
            return {"pages": pages, "rate": rate, "lag_max_ms": out["lag_max"] * 1000,
                    "lag_p99_ms": out["lag_p99"] * 1000, "reason": out["reason"],
                    "lag_max_outside_gc_ms": (out.get("lag_max_outside_gc") or 0) * 1000,
                    "lag_top_ms_at_s": out.get("lag_top"), "gc_full_pauses_ms": whole.get("gc_full_pauses_ms"),
                    "start_delay": first_at - out["opened_at"], "checks": out["stats"]}

        for rnd in range(runs):
            order = ["none", "guard"] if rnd % 2 == 0 else ["guard", "none"]  # who starts first alternates
            crawls = {mode: start(mode, pagecount) for mode in order}
            row: dict[str, Any] = {"order": order}
            for mode in order:
                row[mode] = collect(mode, crawls[mode])
            row["naive"] = collect("naive", start("naive", naive_pages))
            row["ratio_guard"] = row["guard"]["rate"] / row["none"]["rate"]
            row["ratio_naive"] = row["naive"]["rate"] / row["none"]["rate"]
            row["lag_extra_guard_ms"] = row["guard"]["lag_max_ms"] - row["none"]["lag_max_ms"]
            row["lag_extra_naive_ms"] = row["naive"]["lag_max_ms"] - row["none"]["lag_max_ms"]
            rounds.append(row)
            print(f"    round {rnd + 1}/{runs}: pages/s none {row['none']['rate']:.1f} guard "
                  f"{row['guard']['rate']:.1f} naive {row['naive']['rate']:.1f}; max lag ms none "
                  f"{row['none']['lag_max_ms']:.0f} guard {row['guard']['lag_max_ms']:.0f} naive "
                  f"{row['naive']['lag_max_ms']:.0f}", flush=True)
    res.details["overhead"] = rounds
    for r in rounds:
        for mode in ("none", "guard"):
            if r[mode]["reason"] not in ("finished", "closespider_pagecount"):
                raise RuntimeError(f"the {mode} crawl ended with {r[mode]['reason']}")
    ratio = median([r["ratio_guard"] for r in rounds])
    res.add("overhead", "crawl throughput, guard / no guard", round(ratio, 4), "", ">= 0.98", ratio >= 0.98,
            [round(r["ratio_guard"], 4) for r in rounds])
    res.add("overhead", "crawl throughput, naive baseline / no guard", round(median([r["ratio_naive"] for r in rounds]), 4),
            "", "(contrast)", None, [round(r["ratio_naive"], 4) for r in rounds])
    extra = median([r["lag_extra_guard_ms"] for r in rounds])
    res.add("overhead", "diagnostic: largest timer delay outside full GC collections, guard minus no guard",
            round(median([r["guard"]["lag_max_outside_gc_ms"] - r["none"]["lag_max_outside_gc_ms"] for r in rounds]), 1),
            " ms", "(reported)", None,
            [round(r["guard"]["lag_max_outside_gc_ms"] - r["none"]["lag_max_outside_gc_ms"], 1) for r in rounds])
    res.add("overhead", "largest 10 ms timer delay, guard minus no guard", round(extra, 1), " ms", "< 20 ms",
            extra < 20, [round(r["lag_extra_guard_ms"], 1) for r in rounds],
            note="no guard: median {:.1f} ms; guard: {:.1f} ms".format(median([r["none"]["lag_max_ms"] for r in rounds]),
                                                              median([r["guard"]["lag_max_ms"] for r in rounds])))
    res.add("overhead", "99th percentile 10 ms timer delay, guard minus no guard",
            round(median([r["guard"]["lag_p99_ms"] - r["none"]["lag_p99_ms"] for r in rounds]), 1), " ms",
            "(reported)", None, [round(r["guard"]["lag_p99_ms"] - r["none"]["lag_p99_ms"], 1) for r in rounds])
    res.add("overhead", "largest 10 ms timer delay, naive minus no guard",
            round(median([r["lag_extra_naive_ms"] for r in rounds]), 1), " ms", "(contrast)", None,
            [round(r["lag_extra_naive_ms"], 1) for r in rounds])
    res.add("overhead", "pre-flight: start delay, guard minus no guard",
            round(median([(r["guard"]["start_delay"] - r["none"]["start_delay"]) * 1000 for r in rounds]), 0),
            " ms", "(one getBalance round trip, paid once)", None,
            [round((r["guard"]["start_delay"] - r["none"]["start_delay"]) * 1000) for r in rounds])


# -- 4: stop latency ------------------------------------------------------------------------------
def measure_rtt(sb: Sandbox, n: int = 3) -> float:
    client = BalanceClient(KEY, api_url=sb.url, timeout=5)
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            client.get_balance()
            times.append(time.perf_counter() - t)
    finally:
        client.close()
    return median(times)


def bench_stop(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    rng = random.Random(5)
    rows = []
    with sandbox() as sb, sites(1) as (site,):
        rtt = measure_rtt(sb)
        bound = INTERVAL + rtt + 0.25
        for i in range(runs):
            sb.set_balance(KEY, "10")
            site.reset()
            crawl = Crawl(tmp, "stop", {"guard": "guard", "key": KEY, "api_url": sb.url, "interval": INTERVAL,
                                        "record_schedule": True, "settings": crawl_settings(4),
                                        "crawlers": [{"url": site.url}]})
            deadline = time.monotonic() + 60
            while site.request_count == 0 and crawl.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(1.5, 2.5))  # a random phase against the poll
            sb.set_balance(KEY, "0")
            t0 = time.time()
            out = crawl.result()["crawlers"][0]
            decided = out.get("tripped_at")
            if decided is None or out.get("reason") != "vastcap_low_balance":
                raise RuntimeError(f"the guard did not stop the crawl: {out.get('reason')}")
            first_sched: dict[str, float] = {}
            for path, t in out["scheduled"]:
                first_sched.setdefault(path, t)
            site_paths = [r for r in site.requests if r.path.startswith("/page/")]
            leaked = [r.path for r in site_paths if first_sched.get(r.path, 0.0) >= decided]
            after = [r.path for r in site_paths if r.at >= decided]
            row = {"latency": out["closed_at"] - t0, "decision": decided - t0, "close": out["closed_at"] - decided,
                   "leaked": len(leaked), "site_after_decision": len(after),
                   "scheduled_after_decision": sum(1 for _, t in out["scheduled"] if t >= decided),
                   "pages": len(site_paths)}
            rows.append(row)
            print(f"    run {i + 1}/{runs}: balance 0 -> spider_closed {row['latency']:.3f} s (decision "
                  f"{row['decision']:.3f} s); scheduled after the decision: {row['scheduled_after_decision']}, "
                  f"reached the site: {row['leaked']}", flush=True)
    res.details["stop"] = {"rtt": rtt, "bound": bound, "runs": rows}
    lat = [r["latency"] for r in rows]
    res.add("stop", "stop latency, balance 0 -> spider_closed (median)", round(median(lat), 3), " s",
            f"<= {bound:.3f} s (interval {INTERVAL} + round trip {rtt:.3f} + 0.25)", median(lat) <= bound,
            [round(x, 3) for x in lat])
    res.add("stop", "stop latency, worst run", round(max(lat), 3), " s", f"<= {bound:.3f} s", max(lat) <= bound)
    leaked = sum(r["leaked"] for r in rows)
    res.add("stop", "requests scheduled after the guard's decision that reached the site", leaked, "",
            "= 0 (all runs)", leaked == 0, [r["leaked"] for r in rows],
            note="scheduled after the decision (dropped by the guard): {}; reached the site after the decision "
                 "(scheduled before it, already in flight): {}".format([r["scheduled_after_decision"] for r in rows],
                                                                  [r["site_after_decision"] for r in rows]))


# -- 5: pre-flight leak -------------------------------------------------------------------------
def bench_preflight(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    keys = {"invalid key": "vc_bench_NOT_A_KEY_00000000000", "account disabled": "vc_bench_DISABLED_0000000000",
            "low balance": "vc_bench_LOW_000000000000000", "control (funded)": KEY}
    counts: dict[str, list[int]] = {k: [] for k in keys}
    reasons: dict[str, list[str]] = {k: [] for k in keys}
    with sandbox({KEY: "10", keys["low balance"]: "0.0005"}, disabled=[keys["account disabled"]]) as sb, \
            sites(len(keys)) as site_list:
        for i in range(runs):
            for s in site_list:
                s.reset()
            crawlers = []
            for (_case, key), site in zip(keys.items(), site_list, strict=True):
                st: dict[str, Any] = {"VASTCAP_API_KEY": key, "CLOSESPIDER_PAGECOUNT": 5}
                crawlers.append({"url": site.url, "settings": st})
            out = Crawl(tmp, "preflight", {"guard": "guard", "key": KEY, "api_url": sb.url, "interval": INTERVAL,
                                           "settings": {}, "crawlers": crawlers}).result()
            for (case, _), site, c in zip(keys.items(), site_list, out["crawlers"], strict=True):
                counts[case].append(site.request_count)
                reasons[case].append(c["reason"])
            print(f"    run {i + 1}/{runs}: " + ", ".join(f"{c}: {counts[c][-1]} ({reasons[c][-1]})" for c in keys),
                  flush=True)
    res.details["preflight"] = {"requests": counts, "reasons": reasons}
    expected = {"invalid key": "vastcap_invalid_key", "account disabled": "vastcap_account_disabled",
                "low balance": "vastcap_low_balance"}
    for case, reason in expected.items():
        total = sum(counts[case])
        ok = total == 0 and all(r == reason for r in reasons[case])
        res.add("preflight", f"requests reaching the site, {case}", total, "", f"= 0, closed with {reason}", ok,
                counts[case])
    ctrl = counts["control (funded)"]
    res.add("preflight", "requests reaching the site, control crawl with a funded key (proves the count works)",
            int(median([float(c) for c in ctrl])), "", "> 0", min(ctrl) > 0, ctrl)


# -- 6: poll sharing ----------------------------------------------------------------------------
def sharing_target(calls: int, intervals: float) -> bool:
    """About one call per interval: not one per session, and not fewer (a poller that went quiet is blind)."""
    return math.floor(intervals) - 3 <= calls <= math.ceil(intervals) + 3


def bench_sharing(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    n, intervals = 20, 10
    rows_s, rows_p = [], []
    with sandbox() as sb, sites(1, delay=0.1) as (site,):
        for i in range(runs):
            sb.reset_calls()
            # 20 crawlers, one process, one key; each runs 10 intervals and closes itself
            st = {"CONCURRENT_REQUESTS": 1, "DOWNLOAD_DELAY": 0.5, "RANDOMIZE_DOWNLOAD_DELAY": False,
                  "CLOSESPIDER_TIMEOUT": INTERVAL * intervals}
            out = Crawl(tmp, "sharing", {"guard": "guard", "key": KEY, "api_url": sb.url, "interval": INTERVAL,
                                         "settings": st, "crawlers": [{"url": site.url}] * n}).result()
            cs = out["crawlers"]
            window = max(c["closed_at"] for c in cs) - min(c["opened_at"] for c in cs)
            calls = sb.call_count("getBalance")
            checks = [c["stats"].get("vastcap/checks", 0) for c in cs]
            rows_s.append({"calls": calls, "window": window, "intervals": window / INTERVAL,
                           "reasons": sorted({c["reason"] for c in cs}), "checks_per_crawler": median(checks)})
            print(f"    Scrapy run {i + 1}/{runs}: {n} crawlers, {window:.2f} s ({window / INTERVAL:.1f} intervals): "
                  f"{calls} getBalance calls; each crawler took {median(checks):g} checks into account", flush=True)
        if not Path(CHROMIUM).exists():
            res.errors["sharing (Playwright)"] = f"no Chromium at {CHROMIUM}"
        else:
            for i in range(runs):
                sb.reset_calls()
                proc = subprocess.run(
                    [sys.executable, str(HERE / "pw_worker.py"), json.dumps({
                        "key": KEY, "api_url": sb.url, "site_url": site.url, "sessions": n, "interval": INTERVAL,
                        "intervals": intervals, "chromium": CHROMIUM})],
                    capture_output=True, text=True, env=child_env(), timeout=300)
                if proc.returncode != 0:
                    raise RuntimeError(f"Playwright worker failed:\n{proc.stderr[-3000:]}")
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                ss = out["sessions"]
                life = max(s["left_at"] for s in ss) - min(s["entered_at"] for s in ss)
                w = out["window"]
                in_window = [c.at for c in sb.calls("getBalance") if w["start"] <= c.at < w["end"]]
                calls = len(in_window)
                gaps = [round(b - a, 3) for a, b in itertools.pairwise(in_window)]
                total = sb.call_count("getBalance")
                rows_p.append({"calls": calls, "window": w["end"] - w["start"], "intervals": intervals,
                               "calls_total": total, "lifetime_intervals": life / INTERVAL, "gaps_s": gaps,
                               "pages": sum(s["pages"] for s in ss), "browser": out.get("browser_version")})
                print(f"    Playwright run {i + 1}/{runs}: {n} async scopes all running for {intervals} intervals: "
                      f"{calls} getBalance calls ({total} in all over {life / INTERVAL:.1f} intervals from the "
                      f"first entry to the last exit, pre-flights included), {rows_p[-1]['pages']} pages loaded",
                      flush=True)
    res.details["sharing"] = {"scrapy": rows_s, "playwright": rows_p}
    for label, rows in (("20 Scrapy crawlers in one process", rows_s), ("20 async Playwright scopes", rows_p)):
        if not rows:
            continue
        calls = int(median([r["calls"] for r in rows]))
        iv = median([r["intervals"] for r in rows])
        ok = all(sharing_target(r["calls"], r["intervals"]) for r in rows)
        if rows is rows_p:
            res.add("sharing", f"getBalance calls in all, {label}, first entry to last exit "
                    f"({median([r['lifetime_intervals'] for r in rows]):.1f} intervals)",
                    int(median([r["calls_total"] for r in rows])), "", "(reported)", None,
                    [r["calls_total"] for r in rows])
        res.add("sharing", f"getBalance calls, {label}, {iv:.1f} intervals", calls, "",
                f"intervals +/- 3 in every run (unshared: {n} x {iv:.0f} = {n * round(iv)})", ok,
                [r["calls"] for r in rows], note=f"median window {iv:.1f} intervals of {INTERVAL} s")


# -- 8: Playwright session starts ---------------------------------------------------------------
PWSTARTS_INTERVAL = 1.0  # the guard's interval here: a reading every second, each taking LATENCY


def bench_pwstarts(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    """A script that opens a new context and page for every page load, guarded (interval 1 s,
    getBalance answering in 300 ms) and unguarded, in interleaved pairs: both processes of a pair
    run at once but take turns to load pages (slots of a few seconds), so both sample the same
    moments of this shared machine and never compete with each other; who goes first alternates."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}")
    slot, per_side = (2.0, 5) if quick else (3.0, 8)
    rows: dict[str, list[dict[str, Any]]] = {"sync": [], "async": []}
    with sandbox() as sb, sites(2) as site_list:

        def start(api: str, guarded: bool, site: LocalSite, turns: list[list[float]]) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, str(HERE / "pw_starts_worker.py"), json.dumps({
                    "guard": guarded, "key": KEY, "api_url": sb.url, "site_url": site.url,
                    "interval": PWSTARTS_INTERVAL, "warmup": 5, "api": api, "chromium": CHROMIUM,
                    "slots": turns})],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())

        def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"pw_starts_worker failed:\n{err[-3000:]}")
            return dict(json.loads(out.strip().splitlines()[-1]))

        for i in range(runs):
            for api in ("sync", "async"):
                # who goes first, and on which of the two identical sites, alternates
                order = (False, True) if i % 2 == 0 else (True, False)
                t0 = time.time() + 12  # both launched and warmed up by then
                turns = {g: [[t0 + (2 * k + j) * slot, t0 + (2 * k + j + 1) * slot] for k in range(per_side)]
                         for j, g in enumerate(order)}
                procs = {g: start(api, g, site_list[j], turns[g]) for j, g in enumerate(order)}
                pair = {("guard" if g else "none"): result(procs[g]) for g in order}
                late = max(pair["none"].get("late", 0), pair["guard"].get("late", 0))
                snap = pair["guard"].get("snapshot") or {}
                admissions = pair["guard"]["admissions"]
                row = {"order": ["guard" if g else "none" for g in order], "ratio": pair["guard"]["rate"] /
                       pair["none"]["rate"], "none": pair["none"]["rate"], "guard": pair["guard"]["rate"],
                       "loads": [pair["none"]["loads"], pair["guard"]["loads"]], "checks": snap.get("checks"),
                       "check_failures": snap.get("check_failures"), "starts": len(admissions),
                       "admission_max_ms": max(admissions) * 1000, "admission_median_ms":
                       median(admissions) * 1000, "late_s": late, "browser": pair["none"].get("browser_version")}
                if row["checks"] is None or row["checks"] < 2 * slot * per_side / PWSTARTS_INTERVAL / 2:
                    raise RuntimeError(f"the guarded run took only {row['checks']} readings")
                rows[api].append(row)
                print(f"    pair {i + 1}/{runs} ({api}): loads/s none {row['none']:.2f} guard {row['guard']:.2f} "
                      f"-> {row['ratio']:.3f}; guard readings {row['checks']}, {row['starts']} starts admitted in "
                      f"{row['admission_median_ms']:.3f} ms (longest {row['admission_max_ms']:.2f} ms)"
                      + (f"; one side was {late:.1f} s late for a turn" if late > 0.5 else ""), flush=True)
    res.details["pwstarts"] = {"slot_s": slot, "slots_per_side": per_side, "interval": PWSTARTS_INTERVAL,
                               "latency": LATENCY, "pairs": rows}
    for api, label in (("sync", "sync API"), ("async", "async API")):
        ratios = [r["ratio"] for r in rows[api]]
        ratio = median(ratios)
        res.add("pwstarts", f"page loads/s with a new context + page each, guard / no guard, {label}",
                round(ratio, 4), "", ">= 0.98", ratio >= 0.98, [round(x, 4) for x in ratios],
                note=f"no guard {median([r['none'] for r in rows[api]]):.2f} loads/s, guard "
                     f"{median([r['guard'] for r in rows[api]]):.2f}; interval {PWSTARTS_INTERVAL:g} s, "
                     f"getBalance {LATENCY * 1000:.0f} ms, {per_side} turns of {slot:g} s per side")
        longest = max(r["admission_max_ms"] for r in rows[api])
        res.add("pwstarts", f"longest wait of a session start for the guard, {label} (every run)",
                round(longest, 2), " ms", f"< {LATENCY * 1000:.0f} ms (never a getBalance round trip)",
                longest < LATENCY * 1000, [round(r["admission_max_ms"], 2) for r in rows[api]],
                note=f"{sum(r['starts'] for r in rows[api])} starts; median admission "
                     f"{median([r['admission_median_ms'] for r in rows[api]]):.3f} ms")


# -- 7: import cost -------------------------------------------------------------------------------
FRAMEWORKS = ("scrapy", "twisted", "playwright", "greenlet", "redis", "selenium")


def bench_import(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    totals, requests_part = [], []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import vastcap_guard"],
                              capture_output=True, text=True, env=child_env(), check=True)
        cum: dict[str, int] = {}
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
            if m:
                cum[m.group(4)] = int(m.group(2))
        totals.append(cum["vastcap_guard"] / 1000)
        requests_part.append(cum.get("requests", 0) / 1000)
        loaded = {name.split(".")[0] for name in cum}
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, json, vastcap_guard; print(json.dumps(sorted({m.split('.')[0] "
         "for m in sys.modules})))"], capture_output=True, text=True, env=child_env(), check=True)
    modules = set(json.loads(probe.stdout))
    present = sorted(m for m in FRAMEWORKS if m in modules or m in loaded)
    res.details["import"] = {"total_ms": totals, "requests_ms": requests_part, "frameworks_loaded": present}
    res.add("import", "python -X importtime -c 'import vastcap_guard', cumulative", round(median(totals), 1), " ms",
            "(reported)", None, [round(t, 1) for t in totals],
            note=f"of which `requests` (the HTTP client the core uses): {median(requests_part):.1f} ms")
    res.add("import", "framework modules imported by `import vastcap_guard` (" + ", ".join(FRAMEWORKS) + ")",
            len(present), "", "= 0 (none in sys.modules, none in the importtime list)", not present, present)


# -- issue 6: fleet -------------------------------------------------------------------------------
class Member:
    def __init__(self, opts: dict[str, Any]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fleet_member.py"), json.dumps(opts)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=child_env())
        self.lines: list[dict[str, Any]] = []
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    @property
    def started(self) -> bool:
        return any("action" in ln for ln in self.lines)

    @property
    def stopped_at(self) -> float | None:
        return next((ln["t"] for ln in self.lines if ln.get("stop")), None)

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self._err.join(5)


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class ScrapyMember:
    """A fleet member that is a real Scrapy crawl (``VASTCAP_SHARED_STATE``), on its own site."""

    def __init__(self, tmp: Path, sb: Sandbox, site: LocalSite, redis_url: str | None, interval: float) -> None:
        site.reset()
        self.site = site
        self.out: dict[str, Any] | None = None
        st = {"CONCURRENT_REQUESTS": 1, "DOWNLOAD_DELAY": 0.5, "RANDOMIZE_DOWNLOAD_DELAY": False,
              "VASTCAP_TIMEOUT": 2}
        self.crawl = Crawl(tmp, "fleet", {"guard": "guard", "key": KEY, "api_url": sb.url, "interval": interval,
                                          "shared_state": redis_url, "settings": st,
                                          "crawlers": [{"url": site.url}]})

    @property
    def started(self) -> bool:
        return self.site.request_count > 0

    @property
    def stopped_at(self) -> float | None:
        if self.out is None and self.crawl.proc.poll() is not None:
            self.out = self.crawl.result()["crawlers"][0]
        if self.out is None:
            return None
        return self.out.get("closed_at") if self.out.get("reason") == "vastcap_low_balance" else None

    @property
    def reason(self) -> str | None:
        return None if self.out is None else self.out.get("reason")

    def finish(self) -> None:
        if self.crawl.proc.poll() is None:
            self.crawl.proc.terminate()
        if self.out is None:
            with contextlib.suppress(Exception):
                self.out = self.crawl.result(timeout=20)["crawlers"][0]


def fleet_round(sb: Sandbox, redis_url: str | None, intervals: list[float], measure: int,
                scrapy_sites: list[LocalSite] | None = None, tmp: Path | None = None) -> dict[str, Any]:
    """Start members, count getBalance calls over ``measure`` intervals, then empty the account."""
    sb.set_balance(KEY, "10")
    members: list[Any]
    if scrapy_sites is not None:
        assert tmp is not None
        members = [ScrapyMember(tmp, sb, site, redis_url, iv) for site, iv in zip(scrapy_sites, intervals, strict=False)]
    else:
        members = [Member({"api_url": sb.url, "key": KEY, "shared_state": redis_url, "interval": iv})
                   for iv in intervals]
    try:
        if not wait_until(lambda: all(m.started for m in members), 120):
            raise RuntimeError("fleet members did not start: " + " | ".join(getattr(m, "stderr", "")[-500:]
                                                                            for m in members))
        calls = None
        if measure:
            time.sleep(2 * INTERVAL)  # settle: every member is past its pre-flight
            t_start = time.monotonic()
            time.sleep(measure * INTERVAL)
            t_end = time.monotonic()
            calls = sum(1 for c in sb.calls("getBalance") if t_start <= c.monotonic < t_end)
        sb.set_balance(KEY, "0")
        t0 = time.time()
        wait_until(lambda: all(m.stopped_at is not None for m in members), max(intervals) + 20)
        stops = [m.stopped_at for m in members]
        return {"calls": calls, "stop_all": (max(stops) - t0) if all(s is not None for s in stops) else None,
                "stop_first": min((s for s in stops if s is not None), default=t0) - t0,
                "stopped": sum(s is not None for s in stops),
                "each": [None if s is None else round(s - t0, 3) for s in stops],
                "reasons": [getattr(m, "reason", None) for m in members]}
    finally:
        for m in members:
            m.finish()


def bench_fleet(res: Results, tmp: Path, quick: bool, runs: int, kind: str = "auto") -> None:
    from vastcap_guard.scrapy import SETTING_NAMES

    n = 4 if quick else 8
    measure = 10 if quick else 30
    scrapy_fleet = "shared_state" in SETTING_NAMES
    if kind == "auto":
        kind = "scrapy" if scrapy_fleet else "core"
    if kind == "scrapy" and not scrapy_fleet:
        raise RuntimeError("this vastcap_guard.scrapy has no VASTCAP_SHARED_STATE setting")
    what = "Scrapy crawl processes (VASTCAP_SHARED_STATE)" if kind == "scrapy" else \
        "core-level guarded jobs (bench/fleet_member.py: subscribe(config, cb, guard=guard))"
    print(f"    members: {what}", flush=True)
    rows: list[dict[str, Any]] = []
    mixed: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        sb = stack.enter_context(sandbox())
        redis_url = stack.enter_context(redis_server(tmp))
        member_sites = stack.enter_context(sites(n)) if kind == "scrapy" else None
        for i in range(runs):
            row = {}
            for mode in (("shared", "solo") if i % 2 == 0 else ("solo", "shared")):
                row[mode] = fleet_round(sb, redis_url if mode == "shared" else None, [INTERVAL] * n, measure,
                                        member_sites, tmp)
            rows.append(row)
            print(f"    run {i + 1}/{runs}: {n} processes x {measure} intervals: getBalance calls shared "
                  f"{row['shared']['calls']}, solo {row['solo']['calls']}; balance 0 -> all {n} stopped in "
                  f"{fmt3(row['shared']['stop_all'])} s (shared) / {fmt3(row['solo']['stop_all'])} s (solo)",
                  flush=True)
        if not quick:
            for i in range(runs):
                row = {}
                for mode in ("shared", "solo"):
                    row[mode] = fleet_round(sb, redis_url if mode == "shared" else None,
                                            [INTERVAL] + [10.0] * (n - 1), 0, member_sites, tmp)
                mixed.append(row)
                print(f"    mixed run {i + 1}/{runs}: 1 member at {INTERVAL} s + {n - 1} at 10 s: balance 0 -> all "
                      f"stopped in {fmt3(row['shared']['stop_all'])} s (shared) / {fmt3(row['solo']['stop_all'])} s "
                      "(solo)", flush=True)
    res.details["fleet"] = {"uniform": rows, "mixed": mixed, "members": what,
                            "scrapy_setting_available": scrapy_fleet}
    bound = INTERVAL + LATENCY + 0.1 + 1.0
    sh = [r["shared"]["calls"] for r in rows]
    so = [r["solo"]["calls"] for r in rows]
    res.add("fleet", f"getBalance calls, {n} processes x {measure} intervals, shared state", int(median(sh)), "",
            f"{measure} +/- 3 in every run (one per interval for the fleet)",
            all(measure - 3 <= c <= measure + 3 for c in sh), sh,
            note=f"members: {what}")
    res.add("fleet", f"getBalance calls, {n} processes x {measure} intervals, no shared state", int(median(so)), "",
            f"(contrast: about {n} x {measure} = {n * measure})", None, so)
    for data, slow in ((rows, f"{n} members at {INTERVAL} s"),
                              (mixed, f"1 member at {INTERVAL} s + {n - 1} at 10 s")):
        if not data:
            continue
        st = [r["shared"]["stop_all"] for r in data]
        ok = all(s is not None for s in st)
        res.add("fleet", f"balance 0 -> every member stopped, {slow}, shared state",
                round(median([s for s in st if s is not None]), 3) if ok else None, " s",
                f"<= {bound:.2f} s in every run (interval + round trip + 1 s)",
                ok and max(s for s in st if s is not None) <= bound, [fmt3(s) for s in st])
        so_st = [r["solo"]["stop_all"] for r in data if r["solo"]["stop_all"] is not None]
        res.add("fleet", f"balance 0 -> every member stopped, {slow}, no shared state",
                round(median(so_st), 3) if so_st else None, " s", "(contrast: each member's own next poll)", None,
                [fmt3(r["solo"]["stop_all"]) for r in data])


# -- issue 13: a SIGKILLed fleet poller is replaced on the lease heartbeat --------------------------
def lease_holder(redis_url: str, api_url: str) -> str | None:
    import redis

    from vastcap_guard._secrets import key_id

    r = redis.Redis.from_url(redis_url)
    try:
        raw = r.get(f"vastcap-guard:{key_id(KEY, api_url)}:lease")
        return raw.decode() if raw is not None else None
    finally:
        r.close()


def handover_round(sb: Sandbox, redis_url: str, interval: float, members: int = 3) -> dict[str, Any]:
    """Start a fleet, SIGKILL the member holding the lease, time until another member holds it."""
    sb.set_balance(KEY, "10")
    first = Member({"api_url": sb.url, "key": KEY, "shared_state": redis_url, "interval": interval})
    rest: list[Member] = []
    try:
        if not wait_until(lambda: first.started and lease_holder(redis_url, sb.url) is not None, 60):
            raise RuntimeError("the first fleet member never took the lease: " + first.stderr[-500:])
        holder = lease_holder(redis_url, sb.url)
        rest = [Member({"api_url": sb.url, "key": KEY, "shared_state": redis_url, "interval": interval})
                for _ in range(members - 1)]
        if not wait_until(lambda: all(m.started for m in rest), 60):
            raise RuntimeError("fleet members did not start")
        time.sleep(1.5)
        if lease_holder(redis_url, sb.url) != holder:
            raise RuntimeError("the lease moved before the kill")
        first.proc.kill()  # SIGKILL: no goodbye, the lease is left to expire
        killed = time.monotonic()
        replaced = wait_until(lambda: lease_holder(redis_url, sb.url) not in (None, holder), 2 * interval + 60)
        took = time.monotonic() - killed if replaced else None
        calls = None
        if replaced and interval <= 1.0:
            # after the hand-over one member polls: one call per interval, not one per member
            t0 = time.monotonic()
            time.sleep(10 * interval)
            calls = sum(1 for c in sb.calls("getBalance") if t0 <= c.monotonic < t0 + 10 * interval)
        return {"interval": interval, "seconds": took, "calls_in_10_intervals": calls}
    finally:
        first.finish()
        for m in rest:
            m.finish()


def bench_handover(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    intervals = [1.0, 60.0] if quick else [1.0, 10.0, 60.0, 300.0]
    rows: dict[float, list[float | None]] = {iv: [] for iv in intervals}
    after: list[int] = []
    with contextlib.ExitStack() as stack:
        sb = stack.enter_context(sandbox(latency=0))
        redis_url = stack.enter_context(redis_server(tmp))
        for i in range(runs):
            for iv in intervals:
                out = handover_round(sb, redis_url, iv)
                rows[iv].append(out["seconds"])
                if out["calls_in_10_intervals"] is not None:
                    after.append(out["calls_in_10_intervals"])
                print(f"    run {i + 1}/{runs}: interval {iv:g} s: poller SIGKILLed -> replaced in "
                      f"{fmt3(out['seconds'])} s; calls in the next 10 intervals: {out['calls_in_10_intervals']}",
                      flush=True)
    res.details["handover"] = {"seconds": {str(k): v for k, v in rows.items()}, "calls_after": after}
    if after:
        res.add("handover", "getBalance calls in the 10 intervals after the hand-over (3 members, 1 s)",
                int(median(after)), "", "10 +/- 2 in every run (one poller, not several)",
                all(8 <= c <= 12 for c in after), after)
    for iv, took in rows.items():
        ok = all(t is not None for t in took)
        res.add("handover", f"fleet poller SIGKILLed -> another member holds the lease, interval {iv:g} s",
                round(median([t for t in took if t is not None]), 3) if ok else None, " s",
                "<= 5 s in every run", ok and max(t for t in took if t is not None) <= 5.0,
                [fmt3(t) for t in took])


# -- Crawlee: run time and stop latency ---------------------------------------------------------------
def crawlee_crawl(tmp: Path, config: dict[str, Any]) -> dict[str, Any]:
    """``bench/crawlee_worker.py`` in a child process (a fresh Crawlee: its storages are per process)."""
    config = {"storage_dir": tempfile.mkdtemp(dir=tmp, prefix="crawlee-"), "key": KEY, "interval": INTERVAL, **config}
    proc = subprocess.run([sys.executable, str(HERE / "crawlee_worker.py"), json.dumps(config)],
                          capture_output=True, text=True, env=child_env(), timeout=600)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"crawlee worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bench_crawlee(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    """ParselCrawler with and without guard_crawler: pairs of crawls run side by side (each on its own
    site, who starts first alternates), so that other load on the machine hits both alike; then stops."""
    try:
        import crawlee  # noqa: F401
    except ImportError:
        raise RuntimeError("crawlee is not installed (pip install 'crawlee[parsel]')") from None
    pages = 300 if quick else 1000
    pairs, stops = [], []
    with sandbox() as sb, sites(2, pages=pages, delay=0.02) as site_list:
        by_mode = dict(zip(("none", "guard"), site_list, strict=True))
        for i in range(runs):
            order = ["none", "guard"] if i % 2 == 0 else ["guard", "none"]
            outs: dict[str, dict[str, Any]] = {mode: {} for mode in order}
            threads = []
            for mode in order:
                by_mode[mode].reset()
                config = {"mode": mode, "url": by_mode[mode].url, "api_url": sb.url}
                threads.append(threading.Thread(target=lambda out=outs[mode], c=config: out.update(
                    crawlee_crawl(tmp, c))))
                threads[-1].start()
            for t in threads:
                t.join(600)
            row: dict[str, Any] = {"order": order}
            for mode in order:
                out = outs[mode]
                if out.get("finished") != pages + 1 or out.get("reason") is not None:
                    raise RuntimeError(f"the {mode} crawl did not finish: {out.get('finished')} pages, {out.get('reason')}")
                row[mode] = {"run": out["run_returned"] - out["run_started"], "preflight": out["run_started"] - out["started"],
                             "checks": out.get("checks")}
            row["ratio"] = row["guard"]["run"] / row["none"]["run"]
            pairs.append(row)
            print(f"    pair {i + 1}/{runs} ({order[0]} first): run() {row['none']['run']:.2f} s without, "
                  f"{row['guard']['run']:.2f} s with the guard ({row['guard']['checks']} checks): {row['ratio']:.3f}; "
                  f"pre-flight {row['guard']['preflight'] * 1000:.0f} ms", flush=True)
        site = site_list[1]
        rtt = measure_rtt(sb)
        rng = random.Random(12)
        for i in range(runs):
            sb.set_balance(KEY, "10")
            site.reset()
            box: dict[str, Any] = {}
            worker = threading.Thread(target=lambda out=box: out.update(crawlee_crawl(
                tmp, {"mode": "guard", "url": site.url, "api_url": sb.url})))
            worker.start()
            deadline = time.monotonic() + 60
            while site.request_count == 0 and worker.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(1.0, 2.0))  # a random phase against the poll
            sb.set_balance(KEY, "0")
            t0 = time.time()
            worker.join(300)
            out = box
            if out.get("reason") != "vastcap_low_balance" or out.get("decided") is None:
                raise RuntimeError(f"the guard did not stop the Crawlee crawl: {out.get('reason')}")
            decided = out["decided"]
            passed_after = [p for t, p in out["passed_gate"] if t >= decided]
            in_flight = [r.path for r in site.requests if r.at >= decided]
            row = {"decision": decided - t0, "returned": out["run_returned"] - t0, "shutdown": out["run_returned"] - decided,
                   "passed_gate_after_decision": len(passed_after), "site_after_decision": len(in_flight),
                   "pages": out["finished"]}
            stops.append(row)
            print(f"    stop {i + 1}/{runs}: balance 0 -> decision {row['decision']:.3f} s -> run() returned "
                  f"{row['returned']:.3f} s; past the gate after the decision: {len(passed_after)}; reached the "
                  f"site after it (already in flight): {len(in_flight)}", flush=True)
    res.details["crawlee"] = {"pages": pages, "pairs": pairs, "stops": stops, "rtt": rtt}
    ratio = median([r["ratio"] for r in pairs])
    res.add("crawlee", f"crawler.run() time, guard / no guard ({pages + 1} pages, interleaved pairs)", round(ratio, 4),
            "", "<= 1.03", ratio <= 1.03, [round(r["ratio"], 4) for r in pairs],
            note="run() {:.2f} s without the guard (median); the pre-flight before run(): {:.0f} ms".format(
                median([r["none"]["run"] for r in pairs]), median([r["guard"]["preflight"] * 1000 for r in pairs])))
    bound = INTERVAL + rtt + 0.25
    dec = [r["decision"] for r in stops]
    res.add("crawlee", "stop latency, balance 0 -> the guard's decision (median)", round(median(dec), 3), " s",
            f"<= {bound:.3f} s (interval {INTERVAL} + round trip {rtt:.3f} + 0.25)", median(dec) <= bound,
            [round(x, 3) for x in dec])
    res.add("crawlee", "stop latency, balance 0 -> crawler.run() returned (median)",
            round(median([r["returned"] for r in stops]), 3), " s", "(reported: Crawlee finishes in-flight requests)",
            None, [round(r["returned"], 3) for r in stops])
    leaked = sum(r["passed_gate_after_decision"] for r in stops)
    res.add("crawlee", "requests past the guard's gate after its decision", leaked, "", "= 0 (all runs)", leaked == 0,
            [r["passed_gate_after_decision"] for r in stops],
            note="reached the site after the decision (passed the gate before it, in flight): {}".format(
                [r["site_after_decision"] for r in stops]))


def fmt3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


# -- Selenium: run time with and without the guard, stop latency -------------------------------------
class HangingPage:
    """``/hang``: headers and half a body, then nothing until closed (the page never finishes loading)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.release = threading.Event()
        self.reached = threading.Event()
        page = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(b"<html><body><p>loading")
                    self.wfile.flush()
                    page.reached.set()
                    page.release.wait(120)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hang"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def sel_worker(cfg: dict[str, Any]) -> subprocess.Popen[str]:
    cfg = {"chromium": CHROMIUM, "chromedriver": CHROMEDRIVER, "key": KEY, "interval": INTERVAL, **cfg}
    return subprocess.Popen([sys.executable, str(HERE / "sel_worker.py"), json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def sel_result(proc: subprocess.Popen[str], timeout: float = 180) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("a Selenium benchmark script did not finish in time") from None
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"Selenium worker failed ({proc.returncode}):\n{err[-3000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def bench_selenium(res: Results, tmp: Path, quick: bool, runs: int) -> None:
    """Interleaved pairs of one script with and without the guard; then stops, busy and hanging."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"no {path} (apt-get install chromium chromium-driver)")
    pages = 40 if quick else 100
    rng = random.Random(7)
    pairs: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    hangs: list[dict[str, Any]] = []
    with sandbox() as sb, sites(1, delay=0.05) as (site,):  # 50 ms a page at the site: a fast real page
        rtt = measure_rtt(sb)
        for i in range(runs):
            row: dict[str, Any] = {"order": ["none", "guard"] if i % 2 == 0 else ["guard", "none"]}
            for mode in row["order"]:  # one after the other: a browser each, never two at once
                row[mode] = sel_result(sel_worker({"mode": "run", "guard": mode == "guard", "api_url": sb.url,
                                                   "site_url": site.url, "pages": pages}))
            row["ratio"] = row["guard"]["loop"] / row["none"]["loop"]
            row["cpu_extra_ms"] = (row["guard"]["cpu"] - row["none"]["cpu"]) * 1000
            row["extra_total"] = row["guard"]["total"] - row["none"]["total"]
            pairs.append(row)
            print(f"    pair {i + 1}/{runs}: {pages} pages in {row['none']['loop']:.2f} s without the guard, "
                  f"{row['guard']['loop']:.2f} s with it ({row['guard']['checks']} checks); script CPU "
                  f"{row['none']['cpu']:.2f} s / {row['guard']['cpu']:.2f} s; whole script "
                  f"{row['extra_total']:+.3f} s", flush=True)
        for i in range(runs):
            sb.set_balance(KEY, "10")
            site.reset()
            proc = sel_worker({"mode": "stop", "api_url": sb.url, "site_url": site.url})
            try:
                if not wait_until(lambda p=proc: site.request_count > 0 or p.poll() is not None, 60):  # type: ignore[misc]
                    raise RuntimeError("the Selenium script never browsed")
                time.sleep(rng.uniform(1.0, 2.0))  # a random phase against the poll
                sb.set_balance(KEY, "0")
                t0 = time.time()
                out = sel_result(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            if out.get("reason") != "vastcap_low_balance" or out.get("decided_at") is None:
                raise RuntimeError(f"the guard did not stop the script: {out}")
            stops.append({"latency": out["raised_at"] - t0, "decision": out["decided_at"] - t0,
                          "react": out["raised_at"] - out["decided_at"], "cause": out["cause"]})
            print(f"    stop {i + 1}/{runs} (busy in driver.get): balance 0 -> GuardError in the script "
                  f"{stops[-1]['latency']:.3f} s (decision {stops[-1]['decision']:.3f} s, then "
                  f"{stops[-1]['react']:.3f} s; chained from {out['cause']})", flush=True)
        for i in range(runs):
            sb.set_balance(KEY, "10")
            hang = HangingPage()
            proc = sel_worker({"mode": "stop", "api_url": sb.url, "site_url": site.url, "hang_url": hang.url})
            try:
                if not hang.reached.wait(60):
                    raise RuntimeError("the Selenium script never reached the hanging page")
                time.sleep(rng.uniform(0.5, 1.5))
                sb.set_balance(KEY, "0")
                t0 = time.time()
                out = sel_result(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
                hang.close()
            if out.get("reason") != "vastcap_low_balance" or out.get("decided_at") is None:
                raise RuntimeError(f"the guard did not stop the script: {out}")
            hangs.append({"latency": out["raised_at"] - t0, "react": out["raised_at"] - out["decided_at"],
                          "cause": out["cause"]})
            print(f"    stop {i + 1}/{runs} (in a page that never loads): the pending get raised "
                  f"{hangs[-1]['react']:.3f} s after the decision ({out['cause']})", flush=True)
    res.details["selenium"] = {"rtt": rtt, "pages": pages, "pairs": pairs, "stops": stops, "hangs": hangs}
    ratio = median([r["ratio"] for r in pairs])
    res.add("selenium", f"Selenium script, {pages} pages: page-loop time, guard / no guard (interleaved pairs)",
            round(ratio, 4), "", "<= 1.02", ratio <= 1.02, [round(r["ratio"], 4) for r in pairs],
            note="no guard: {:.2f} s median for the pages".format(median([r["none"]["loop"] for r in pairs])))
    res.add("selenium", "Selenium script's own CPU time during the page loop (all its threads), guard minus no guard",
            round(median([r["cpu_extra_ms"] for r in pairs])), " ms", "(reported: the poller's checks, the gate)",
            None, [round(r["cpu_extra_ms"]) for r in pairs],
            note="no guard: {:.2f} s of CPU for the pages".format(median([r["none"]["cpu"] for r in pairs])))
    res.add("selenium", "Selenium script, whole run (pre-flight, driver start, pages, quit): guard minus no guard",
            round(median([r["extra_total"] for r in pairs]) * 1000), " ms", "(reported: the pre-flight round trip, the poller's end)",
            None, [round(r["extra_total"] * 1000) for r in pairs])
    bound = INTERVAL + rtt + 0.25
    lat = [r["latency"] for r in stops]
    res.add("selenium", "stop latency, balance 0 -> GuardError raised in the script (busy in driver.get)",
            round(median(lat), 3), " s", f"<= {bound:.3f} s (interval {INTERVAL} + round trip {rtt:.3f} + 0.25)",
            median(lat) <= bound and max(lat) <= bound + 0.25, [round(x, 3) for x in lat])
    react = [r["react"] for r in hangs]
    res.add("selenium", "stop in a page that never loads: guard decision -> pending driver.get raised",
            round(median(react), 3), " s", "<= 1 s in every run (quit() would wait for the page-load timeout)",
            max(react) <= 1.0, [round(x, 3) for x in react])


# -- environment and report -----------------------------------------------------------------------
def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "vastcap_guard"],
                           capture_output=True, text=True).stdout.strip() != ""
    mem = "unknown"
    with contextlib.suppress(OSError, IndexError):
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) // 1024} MiB"
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.system()} "
                   f"{platform.release()}",
        "python": platform.python_version(),
        "vastcap-guard": f"{ver('vastcap-guard')} (git {run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'])}"
                         + (", with uncommitted changes in vastcap_guard/" if dirty else "") + ")",
        "scrapy": ver("scrapy"), "twisted": ver("twisted"), "playwright": ver("playwright"),
        "selenium": ver("selenium"),
        "requests": ver("requests"), "redis-py": ver("redis"), "crawlee": ver("crawlee"),
        "chromium": run([CHROMIUM, "--version"]) if Path(CHROMIUM).exists() else "not found",
        "redis-server": run(["redis-server", "--version"]),
        "load_average_at_start": os.getloadavg(),
    }


def fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def markdown(env: dict[str, Any], res: Results, quick: bool, seconds: float, argv: list[str]) -> str:
    lines = [f"# vastcap-guard benchmark results ({'quick smoke run' if quick else 'full run'})", "",
             f"Command: `{' '.join(['python bench/run.py', *argv])}` - took {seconds:.0f} s.", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "| benchmark | figure | median | target | met | runs |", "| --- | --- | --- | --- | --- | --- |"]
    for f in res.figures:
        met = {True: "yes", False: "**NO**", None: "-"}[f.met]
        runs = ", ".join(fmt(r) for r in f.runs)
        lines.append(f"| {f.bench} | {f.name} | {fmt(f.value)}{f.unit} | {f.target} | {met} | {runs} |")
    notes = [f"- {f.bench}, {f.name}: {f.note}" for f in res.figures if f.note]
    if notes:
        lines += ["", "Notes:", *notes]
    if res.errors:
        lines += ["", "Could not run:", *[f"- {k}: {v}" for k, v in res.errors.items()]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="vastcap-guard benchmarks (loopback only; see docs/benchmarks.md)")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (~2 minutes): fewer runs, smaller crawls")
    ap.add_argument("--only", default="", help="comma-separated benchmarks: " + ", ".join(BENCHMARKS))
    ap.add_argument("--runs", type=int, default=0, help="runs per benchmark (default: 3 to 5, fewer with --quick)")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for <full|quick>.json and .md")
    ap.add_argument("--fleet-members", choices=("auto", "core", "scrapy"), default="auto",
                    help="fleet members: Scrapy crawls (when VASTCAP_SHARED_STATE exists: auto) or core-level jobs")
    ap.add_argument("--no-nice", action="store_true",
                    help="do not raise the benchmark's CPU priority (it does when allowed, to keep other load out)")
    args = ap.parse_args(argv)
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    only = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHMARKS)
    unknown = [b for b in only if b not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    niced = False
    if not args.no_nice:
        with contextlib.suppress(OSError):
            os.nice(-10)
            niced = True
    env = environment()
    env["runs"] = "per benchmark, see each figure's runs column"
    env["cpu_priority"] = "nice -10 (children inherit it)" if niced else "default"
    res = Results()
    started = time.monotonic()
    funcs: dict[str, Callable[[Results, Path, bool, int], None]] = {
        "overhead": bench_overhead, "stop": bench_stop, "preflight": bench_preflight,
        "sharing": bench_sharing, "import": bench_import, "fleet": bench_fleet, "handover": bench_handover,
        "selenium": bench_selenium, "pwstarts": bench_pwstarts, "crawlee": bench_crawlee}
    # runs per benchmark: at least 3 for every median of a full run; a quick run keeps 3 where it is cheap
    bench_runs = dict(QUICK_RUNS if args.quick else FULL_RUNS)
    if args.runs:
        bench_runs = {name: args.runs for name in BENCHMARKS}
    with tempfile.TemporaryDirectory(prefix="vastcap-bench-") as tmpdir:
        for name in only:
            print(f"== {name}", flush=True)
            t = time.monotonic()
            try:
                if name == "fleet":
                    bench_fleet(res, Path(tmpdir), args.quick, bench_runs[name], args.fleet_members)
                else:
                    funcs[name](res, Path(tmpdir), args.quick, bench_runs[name])
            except Exception as exc:  # one benchmark failing must not hide the others
                res.errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"  ERROR: {res.errors[name]}", flush=True)
            print(f"  ({time.monotonic() - t:.0f} s)", flush=True)
    seconds = time.monotonic() - started
    env["load_average_at_end"] = os.getloadavg()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "full"
    if args.only:
        stem += "-" + "-".join(only)
    if "fleet" in only and args.fleet_members != "auto":
        stem += f"-{args.fleet_members}"
    payload = {"environment": env, "quick": args.quick, "seconds": round(seconds, 1), "argv": raw_argv,
               "figures": [f.__dict__ for f in res.figures], "errors": res.errors, "details": res.details}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(env, res, args.quick, seconds, raw_argv))
    print(f"\nwrote {out_dir / stem}.json and .md ({seconds:.0f} s)")
    if res.missed:
        print("TARGETS MISSED: " + "; ".join(f"{f.bench}: {f.name}" for f in res.missed))
        return 1
    if res.errors:
        print("COULD NOT RUN: " + "; ".join(res.errors))
        return 2
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
