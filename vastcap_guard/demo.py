"""``vastcap-guard demo``: watch the guard stop a crawl that runs out of money.

It starts, on 127.0.0.1 only, a VastCap sandbox with one account holding a small balance and a
local site whose pages are gated by captchas, then runs the example Scrapy project
(``examples/scrapy_project``, ``scrapy crawl captchas``) against them. The spider pays the sandbox
for every captcha it solves, the balance runs down, and vastcap-guard closes the crawl with
``finish_reason: vastcap_low_balance``. A live display shows pages, balance, spend and checks;
a summary says what was crawled, what it cost, and why and when the crawl stopped.

With ``--pause`` the crawl runs with ``VASTCAP_ON_LOW_BALANCE = "pause"``: when the account runs
dry it pauses instead of closing, the demo tops the account up a few seconds later (as a person
would from the dashboard), and the crawl resumes and runs to the end of the site.

No API key and no network are needed. Exit status: 0 when the guard stopped the crawl as
designed (``--pause``: paused, then finished after the top-up), 1 when the crawl ended any other
way, 2 for bad options or a missing dependency, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, TextIO

from .config import DEFAULT_MIN_BALANCE
from .guard import format_usd
from .sandbox import Sandbox
from .site import LocalSite

__all__ = ["DEMO_KEY", "SPIDER", "find_project", "main"]

#: the sandbox account's key (a local, fake key: it is not a secret and works nowhere else)
DEMO_KEY = "vc_demo_key_local_sandbox_7f3a"
#: the example project's spider
SPIDER = "captchas"
EXPECTED_REASON = "vastcap_low_balance"

_PROJECT_HELP = (
    "The example Scrapy project is examples/scrapy_project in the source repository, and "
    "vastcap_guard/example_project in an installed package. Pass --project PATH/TO/examples/scrapy_project."
)


def find_project(explicit: str | None = None) -> Path | None:
    """The example project's directory (the one holding ``scrapy.cfg``), or ``None``."""
    if explicit:
        candidates = [Path(explicit)]
    else:
        here = Path(__file__).resolve().parent
        candidates = [here.parent / "examples" / "scrapy_project",   # a checkout (editable install)
                      here / "example_project",                      # an installed package (wheel)
                      Path.cwd() / "examples" / "scrapy_project",    # the repository root
                      Path.cwd()]                                    # the project itself
    for path in candidates:
        if (path / "scrapy.cfg").is_file() and (path / "vastcap_demo" / "spiders").is_dir():
            return path.resolve()
    return None


# -- options ---------------------------------------------------------------------------------------
def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive amount in USD: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds: {text!r}")
    return value


def _interval(text: str) -> float:
    value = _seconds(text)
    if value < 0.1:
        raise argparse.ArgumentTypeError(f"must be at least 0.1 seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vastcap-guard demo",
        description="Run the example Scrapy crawl against a local VastCap sandbox until its balance runs "
                    "out, and watch vastcap-guard stop it. No API key, no network.",
    )
    p.add_argument("--balance", type=_usd, default=Decimal("0.05"), metavar="USD",
                   help="the sandbox account's starting balance (default: %(default)s)")
    p.add_argument("--price", type=_usd, default=Decimal("0.002"), metavar="USD",
                   help="what the sandbox charges per solved captcha (default: %(default)s)")
    p.add_argument("--pages", type=_positive_int, default=500,
                   help="pages on the local site (default: %(default)s)")
    p.add_argument("--captcha-every", type=_positive_int, default=5, metavar="K",
                   help="page N carries a captcha when N %% K == 0 (default: %(default)s)")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS",
                   help="VASTCAP_CHECK_INTERVAL, seconds between balance checks (default: %(default)s)")
    p.add_argument("--solve-delay", type=_seconds, default=0.3, metavar="SECONDS",
                   help="how long the sandbox takes to solve a captcha (default: %(default)s)")
    p.add_argument("--download-delay", type=_seconds, default=0.08, metavar="SECONDS",
                   help="the crawl's DOWNLOAD_DELAY for site pages (default: %(default)s)")
    p.add_argument("--timeout", type=_interval, default=180.0, metavar="SECONDS",
                   help="give up (exit 1) if the crawl runs longer than this (default: %(default)s)")
    p.add_argument("--pause", action="store_true",
                   help="VASTCAP_ON_LOW_BALANCE = pause: the crawl pauses when the account runs dry, the demo "
                        "tops it up, and the crawl resumes to the end")
    p.add_argument("--top-up", type=_usd, metavar="USD",
                   help="--pause: how much the demo adds to the account (default: enough for every captcha "
                        "of the site)")
    p.add_argument("--top-up-after", type=_seconds, default=3.0, metavar="SECONDS",
                   help="--pause: how long the crawl waits, paused, before the demo tops up (default: %(default)s)")
    p.add_argument("--project", metavar="PATH",
                   help="the example project's directory (default: examples/scrapy_project of this checkout)")
    p.add_argument("--log", metavar="FILE", help="keep the crawl's full log in FILE")
    p.add_argument("--plain", action="store_true",
                   help="periodic progress lines instead of one updating line (the default when "
                        "the output is not a terminal)")
    return p


# -- watching the crawl ----------------------------------------------------------------------------
_CLOSING = re.compile(r"Closing spider \((?P<reason>[^)]*)\)")
#: the guard's pause and resume lines (``VASTCAP_ON_LOW_BALANCE = "pause"``)
_PAUSED = re.compile(r"vastcap-guard (?:paused the crawl|is holding the crawl before it starts) \[")
_RESUMED = re.compile(r"vastcap-guard: the VastCap balance is .*; the crawl resumes after waiting")


@dataclass
class _CrawlLog:
    """Reads the crawl's output in a thread: copies it to the log file, notes the stop."""

    path: Path
    stop_reason: str | None = None
    stop_at: float | None = None
    stop_clock: str | None = None
    guard_lines: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    #: ``time.monotonic()`` of the current pause's line (None: not paused), and the pauses seen
    paused_at: float | None = None
    pauses: int = 0
    resumes: int = 0

    def follow(self, stream: IO[str]) -> threading.Thread:
        t = threading.Thread(target=self._run, args=(stream,), name="vastcap-demo-log", daemon=True)
        t.start()
        return t

    def _run(self, stream: IO[str]) -> None:
        with self.path.open("w", encoding="utf-8") as out:
            for line in stream:
                out.write(line)
                out.flush()
                line = line.rstrip("\n")
                self.tail = [*self.tail[-29:], line]
                if _PAUSED.search(line):
                    self.paused_at, self.pauses = time.monotonic(), self.pauses + 1
                elif _RESUMED.search(line):
                    self.paused_at, self.resumes = None, self.resumes + 1
                m = _CLOSING.search(line)
                if m and self.stop_reason is None:
                    self.stop_reason, self.stop_at = m.group("reason"), time.monotonic()
                    self.stop_clock = time.strftime("%H:%M:%S")
                start = line.find("[vastcap_guard")
                if start >= 0 and (" ERROR: " in line or " WARNING: " in line):
                    self.guard_lines.append(line[start:])


@dataclass
class _Progress:
    sandbox: Sandbox
    site: LocalSite
    balance_start: Decimal
    price: Decimal
    started: float
    out: TextIO
    tty: bool
    _width: int = 0
    #: money the demo added to the account (--pause)
    topped_up: Decimal = Decimal(0)

    def line(self, log: _CrawlLog) -> str:
        balance = self.sandbox.balance(DEMO_KEY)
        spent = self.balance_start + self.topped_up - balance
        text = (f"{time.monotonic() - self.started:5.1f}s  pages {self.site.request_count:4d}  "
                f"captchas {int(spent / self.price):3d}  balance ${balance:.4f}  spent ${spent:.4f}  "
                f"checks {self.sandbox.call_count('getBalance'):3d}")
        if log.stop_reason:
            text += f"  -> stopping: {log.stop_reason}"
        elif log.paused_at is not None:
            text += "  paused: waiting for a top-up"
        elif log.resumes:
            text += f"  resumed after a top-up of {format_usd(self.topped_up)}"
        return text

    def show(self, log: _CrawlLog) -> None:
        text = self.line(log)
        if self.tty:
            self.out.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()


def _child_env(api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT", "SCRAPY_PYTHON_SHELL"}}
    env["VASTCAP_API_KEY"] = DEMO_KEY
    env["VASTCAP_API_URL"] = api_url
    # the crawl must import this very vastcap_guard, installed or not (a fresh clone); never put a
    # whole site-packages directory ahead of the standard library, though
    package_root = Path(__file__).resolve().parent.parent
    if package_root.name not in {"site-packages", "dist-packages"}:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DEMO_RESULT_FILE", None)
    return env


def _read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the demo; see the module docstring. Returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or bad options (argparse printed why)
        return exc.code if isinstance(exc.code, int) else 2
    out, err = sys.stdout, sys.stderr

    missing = [name for name in ("scrapy", "vastcap_guard.scrapy") if importlib.util.find_spec(name) is None]
    if missing:
        err.write("vastcap-guard demo: the demo needs Scrapy and vastcap_guard.scrapy "
                  f"(missing: {', '.join(missing)}). Install with: pip install 'vastcap-guard[scrapy]'\n")
        return 2
    project = find_project(args.project)
    if project is None:
        where = f" in {args.project!r}" if args.project else ""
        err.write(f"vastcap-guard demo: example project not found{where}. {_PROJECT_HELP}\n")
        return 2

    balance: Decimal = args.balance
    price: Decimal = args.price
    captcha_pages = -(-args.pages // args.captcha_every)
    affordable = max(0, int((balance - DEFAULT_MIN_BALANCE) // price))
    if affordable < 1:
        err.write(f"vastcap-guard demo: a balance of {format_usd(balance)} cannot pay for one captcha at "
                  f"{format_usd(price)} and keep the minimum of {format_usd(DEFAULT_MIN_BALANCE)}. "
                  "Raise --balance.\n")
        return 2

    out.write(f"vastcap-guard demo: a crawl that pays {format_usd(price)} per captcha, on an account "
              f"holding {format_usd(balance)} (enough for {affordable} captchas).\n")
    if captcha_pages <= affordable:
        out.write(f"note: the site has only {captcha_pages} captcha pages, which the balance can pay for: "
                  "the crawl will probably finish before the guard has to stop it (use more --pages).\n")

    tmp = tempfile.TemporaryDirectory(prefix="vastcap-demo-")
    try:
        return _run(args, project, Path(tmp.name), out, err)
    finally:
        tmp.cleanup()


def _run(args: argparse.Namespace, project: Path, tmp: Path, out: TextIO, err: TextIO) -> int:
    balance: Decimal = args.balance
    price: Decimal = args.price
    result_file = tmp / "result.json"
    log_path = Path(args.log).resolve() if args.log else tmp / "crawl.log"
    tty = out.isatty() and not args.plain

    with Sandbox({DEMO_KEY: balance}, price=price, solve_delay=args.solve_delay) as sandbox, \
            LocalSite(pages=args.pages, captcha_every=args.captcha_every) as site:
        cmd = [
            sys.executable, "-m", "scrapy", "crawl", SPIDER,
            "-a", f"site_url={site.url}",
            "-s", f"VASTCAP_CHECK_INTERVAL={args.interval:g}",
            "-s", f"CAPTCHA_COST={price}",
            "-s", f"DOWNLOAD_DELAY={args.download_delay:g}",
            "-s", f"DEMO_RESULT_FILE={result_file}",
            "-s", "LOG_LEVEL=INFO",
        ]
        if args.pause:
            cmd += ["-s", "VASTCAP_ON_LOW_BALANCE=pause"]
        # --pause: enough for every captcha of the site, unless told otherwise
        top_up: Decimal = args.top_up or price * -(-args.pages // args.captcha_every)
        what = f"cd {project} && scrapy crawl {SPIDER}"
        if args.pause:
            what += " -s VASTCAP_ON_LOW_BALANCE=pause"
        out.write(f"sandbox  {sandbox.url}  (account {format_usd(balance)}, {format_usd(price)} per solve)\n"
                  f"site     {site.url}  ({args.pages} pages, a captcha on every {args.captcha_every}th)\n"
                  f"crawl    {what}  (check every {args.interval:g} s)\n\n")
        out.flush()

        started = time.monotonic()
        proc = subprocess.Popen(
                                cmd, cwd=project, env=_child_env(sandbox.url), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace")
        assert proc.stdout is not None
        log = _CrawlLog(log_path)
        reader = log.follow(proc.stdout)
        progress = _Progress(sandbox, site, balance, price, started, out, tty)
        timed_out = interrupted = False
        refresh = 0.2 if tty else 1.0
        topped_up_at: float | None = None
        try:
            while proc.poll() is None:
                paused_at = log.paused_at
                if (args.pause and topped_up_at is None and paused_at is not None
                        and time.monotonic() - paused_at >= args.top_up_after):
                    # what a person would do from the VastCap dashboard
                    sandbox.top_up(DEMO_KEY, top_up)
                    progress.topped_up += top_up
                    topped_up_at = time.monotonic()
                    if not tty:
                        out.write(f"  (the demo tops the account up by {format_usd(top_up)})\n")
                progress.show(log)
                try:
                    proc.wait(timeout=refresh)
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - started > args.timeout:
                    timed_out = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:  # e.g. a closed stdout: never leave the crawl running
            proc.kill()
            proc.wait()
            raise
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Scrapy's graceful shutdown
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)
        ended = time.monotonic()
        progress.show(log)
        progress.done()

        result = _read_result(result_file)
        stats: dict[str, Any] = result.get("stats") or {}
        reason = result.get("finish_reason") or log.stop_reason
        balance_end = sandbox.balance(DEMO_KEY)
        pages = site.request_count
        paths = [r.path for r in site.requests]
        repeated = len(paths) - len(set(paths))
        solves = sandbox.call_count("createTask")

    spent = balance + progress.topped_up - balance_end
    stop_after = (log.stop_at or ended) - started
    out.write("\nSummary\n")
    rows = [
        ("pages crawled", f"{pages} requests reached the site; {stats.get('item_scraped_count', 0)} pages "
                          f"scraped, {stats.get('demo/captchas_solved', 0)} of them behind a solved captcha"),
        ("money spent", f"{format_usd(spent)} of {format_usd(balance + progress.topped_up)} "
                        f"({int(spent / price)} captchas at {format_usd(price)}; {solves} createTask calls)"),
        ("balance", f"{format_usd(balance)} -> {format_usd(balance_end)}"
                    + (f" (topped up by {format_usd(progress.topped_up)})" if progress.topped_up else "")),
        ("balance checks", f"{stats.get('vastcap/checks', '?')} (every {args.interval:g} s), "
                           f"{stats.get('vastcap/check_failures', 0)} failed"),
        ("paid requests blocked", f"{stats.get('vastcap/requests_blocked', 0)} (CostGuardMiddleware)"),
        *([("paused", f"{stats.get('vastcap/pauses', log.pauses)} time(s), "
                      f"{stats.get('vastcap/paused_seconds', 0)} s in all"
                      + (f"; the demo topped up {topped_up_at - started:.1f} s into the crawl"
                         if topped_up_at is not None else ""))] if args.pause else []),
        ("stopped", f"after {stop_after:.1f} s{f' (at {log.stop_clock})' if log.stop_clock else ''}, "
                    f"finish_reason: {reason or 'unknown'}"),
    ]
    for name, value in rows:
        out.write(f"  {name:<22} {value}\n")
    for line in log.guard_lines[-3:]:
        out.write(f"  {'guard log':<22} {line}\n")
    if args.log:
        out.write(f"  full crawl log: {log_path}\n")

    if interrupted:
        out.write("\nInterrupted.\n")
        return 130
    if timed_out:
        err.write(f"\nvastcap-guard demo: the crawl was still running after {args.timeout:g} s and was "
                  "stopped; the guard did not stop it.\n")
    if args.pause:
        return _pause_outcome(args, log, stats, reason, timed_out, repeated, out, err)
    if reason == EXPECTED_REASON and not timed_out:
        out.write(f"\nvastcap-guard stopped the crawl (finish_reason {EXPECTED_REASON}): the account could no "
                  f"longer pay for captchas at {format_usd(price)} and keep its minimum balance of "
                  f"{format_usd(DEFAULT_MIN_BALANCE)}. {format_usd(balance_end)} is left")
        if balance_end < DEFAULT_MIN_BALANCE:
            out.write(" (solves already under way when the guard checked were still charged)")
        out.write(".\n")
        return 0
    if not timed_out:
        if reason == "finished" and balance_end < price:
            why = ("the crawl finished on its own after the balance ran out: is "
                   "vastcap_guard.scrapy.BalanceGuard enabled in the project's EXTENSIONS?")
        elif reason == "finished":
            why = "the crawl ran out of pages before the balance ran out (use more --pages or less --balance)"
        elif reason is None:
            why = f"the crawl ended without a result (exit status {proc.returncode})"
        else:
            why = f"it ended with finish_reason {reason!r}"
        err.write(f"\nvastcap-guard demo: expected the guard to stop the crawl with {EXPECTED_REASON}, but "
                  f"{why}.\n")
    if not args.log:
        err.write("Last lines of the crawl log:\n" + "".join(f"  {line}\n" for line in log.tail[-20:]))
    return 1


def _pause_outcome(args: argparse.Namespace, log: _CrawlLog, stats: dict[str, Any], reason: str | None,
                   timed_out: bool, repeated: int, out: TextIO, err: TextIO) -> int:
    """--pause: the crawl should have paused when the account ran dry, and finished after the top-up
    with every page crawled once."""
    pauses = int(stats.get("vastcap/pauses") or log.pauses)
    if reason == "finished" and pauses >= 1 and not timed_out and not repeated:
        out.write(f"\nvastcap-guard paused the crawl when the account could no longer pay for captchas at "
                  f"{format_usd(args.price)}, and resumed it at the first check after the top-up: the crawl "
                  "finished, every page crawled once (finish_reason finished).\n")
        return 0
    if not timed_out:
        if pauses == 0:
            why = (f"it never paused (finish_reason {reason!r}): the balance outlasted the site "
                   "(use more --pages or less --balance)")
        elif repeated:
            why = f"{repeated} page(s) were requested twice"
        else:
            why = f"it ended with finish_reason {reason!r}"
        err.write(f"\nvastcap-guard demo: expected the crawl to pause, then finish after the top-up, but {why}.\n")
    if not args.log:
        err.write("Last lines of the crawl log:\n" + "".join(f"  {line}\n" for line in log.tail[-20:]))
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
