"""The ``vastcap-guard`` command: balance, pre-flight check, sandbox and demo.

Exit codes of ``check`` (and ``balance``):

====  ==========================  ====================================================
code  reason                      meaning
====  ==========================  ====================================================
0     -                           the account can pay
2     ``vastcap_config_error``    bad usage or configuration (no key file, bad URL...)
10    ``vastcap_low_balance``     balance below ``--min-balance``
11    ``vastcap_invalid_key``     the key does not exist, or no key was given
12    ``vastcap_account_disabled`` the account is disabled
14    ``vastcap_api_unavailable`` the API could not be reached or answered garbage
15    ``vastcap_api_error``       the API answered with another error code
====  ==========================  ====================================================
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .client import BalanceClient
from .config import DEFAULT_MIN_BALANCE, GuardConfig, clean_key
from .errors import ConfigError, GuardError
from .guard import Action, Guard, Verdict, format_usd
from .poller import read_balance
from .run import GuardedRun
from .wording import CLI_NAMES, Wording

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "main"]

EXIT_OK = 0
#: Ctrl-C (SIGINT), as shells report it
EXIT_INTERRUPTED = 130

#: the CLI prints its own lines (stdout, and one stderr line per outcome): the run's log stays quiet
_logger = logging.getLogger("vastcap_guard.cli")
_logger.addHandler(logging.NullHandler())


def _wording(command: str) -> Wording:
    return Wording(job=command, names=CLI_NAMES, style="option")


def _read_key(args: argparse.Namespace) -> str | None:
    """The key from --key-file (``None``: the VASTCAP_API_KEY environment variable)."""
    if not args.key_file:
        return None
    path = Path(args.key_file)
    try:
        raw = sys.stdin.buffer.read() if args.key_file == "-" else path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--key-file {args.key_file!r} cannot be read ({exc.strerror}).",
                          setting="--key-file") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte order mark is not part of the key
    except UnicodeDecodeError:
        raise ConfigError(f"--key-file {args.key_file!r} is not UTF-8 text; save the key as plain text.",
                          setting="--key-file") from None
    key = clean_key(text)
    if not key:
        raise ConfigError(f"--key-file {args.key_file!r} is empty.", setting="--key-file")
    return key


def _config(args: argparse.Namespace, **extra: Any) -> GuardConfig:
    return GuardConfig.build(
        _read_key(args),
        api_url=args.api_url,
        timeout=args.timeout,
        names=CLI_NAMES,
        **extra,
    )


def _json_line(obj: dict[str, Any]) -> str:
    """JSON with Decimals written as exact JSON numbers (``10.25``, not ``"10.25"`` or a float)."""
    raw: dict[str, str] = {}

    def enc(value: object) -> object:
        if isinstance(value, Decimal):
            token = f"__decimal_{len(raw)}__"
            raw[token] = str(value)
            return token
        return value

    text = json.dumps({k: enc(v) for k, v in obj.items()})
    for token, number in raw.items():
        text = text.replace(f'"{token}"', number)
    return text


def _fail(err: GuardError, args: argparse.Namespace, stderr: TextIO, stdout: TextIO) -> int:
    if getattr(args, "json", False):
        out: dict[str, Any] = {"ok": False, "reason": err.reason, "message": err.message}
        balance = getattr(err, "balance", None)
        if isinstance(balance, Decimal):
            out["balance"] = balance
            out["minimum"] = getattr(err, "minimum", None)
        print(_json_line(out), file=stdout)
    print(f"vastcap-guard: {err.reason}: {err.message}", file=stderr)
    return err.exit_code


def cmd_balance(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    cfg = _config(args)
    guard = Guard(cfg)
    err = guard.preflight_error()
    if err:
        return _fail(err, args, stderr, stdout)
    with BalanceClient(cfg.api_key, api_url=cfg.api_url, timeout=cfg.timeout) as client:
        reading = read_balance(client)
    if reading.error is not None or reading.balance is None:
        assert reading.error is not None
        return _fail(reading.error, args, stderr, stdout)
    if args.json:
        print(_json_line({"balance": reading.balance, "currency": "USD"}), file=stdout)
    else:
        print(reading.balance, file=stdout)
    return EXIT_OK


def cmd_check(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    cfg = _config(args, min_balance=args.min_balance, warn_balance=args.warn_balance)
    words = _wording("check")
    run = GuardedRun(cfg, words, logger=_logger)
    try:
        future = run.begin()
        run.preflight(future.result() if future is not None else None)
    finally:
        run.close()
    if run.tripped is not None:
        return _fail(run.tripped, args, stderr, stdout)
    balance = run.balance
    assert balance is not None
    warning = cfg.warn_balance is not None and balance < cfg.warn_balance
    if warning:
        print(f"{words.below_warning(balance, cfg)} (warning)", file=stderr)
    if args.json:
        print(_json_line({"ok": True, "reason": None, "balance": balance, "minimum": cfg.min_balance,
                          "warning": warning}), file=stdout)
    elif not args.quiet:
        print(f"OK: balance {format_usd(balance)} (minimum {format_usd(cfg.min_balance)}) "
              f"for key {cfg.masked_key}", file=stdout)
    return EXIT_OK


def _watch_line(guard: Guard, verdict_text: str) -> str:
    f = guard.forecast
    balance = format_usd(guard.balance) if guard.balance is not None else "?"
    if f.state == "spending":
        assert f.spend_per_minute is not None and f.minutes_left is not None
        rate = f"spending ${f.spend_per_minute:.4f}/min, {_minutes(f.minutes_left)} left"
    elif f.state == "no_spend":
        rate = "no spend"
    else:
        rate = "rate unknown"
    return (f"balance {balance} | spent {format_usd(guard.spent)} | {rate} | "
            f"checks {guard.checks} ({guard.check_failures} failed){verdict_text}")


def _minutes(m: Decimal) -> str:
    total = int(m)
    if m < 1:
        return f"{int(m * 60)}s"
    if total >= 120:
        return f"{total // 60}h{total % 60:02d}m"
    return f"{m:.1f} min"


def _flags(guard: Guard, verdict: Verdict) -> str:
    """What the watch line flags: a failed check, and every line while below a warning level."""
    cfg = guard.config
    note = ""
    if verdict.action is Action.FAILED and verdict.error is not None:
        note = f" | check failed: {verdict.error.reason}"
    elif cfg.warn_balance is not None and guard.balance is not None and guard.balance < cfg.warn_balance:
        note = " | below --warn-balance"
    left = guard.forecast.minutes_left
    if cfg.warn_minutes is not None and left is not None and left < Decimal(str(cfg.warn_minutes)):
        note += " | money runs out within --warn-minutes"
    return note


def cmd_watch(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    cfg = _config(args, min_balance=args.min_balance, warn_balance=args.warn_balance,
                  interval=args.interval, max_failures=args.max_failures, warn_minutes=args.warn_minutes)
    if args.metrics_host is not None and args.metrics_port is None:
        raise ConfigError("--metrics-host needs --metrics-port.", setting="--metrics-host")
    verdicts: queue.Queue[Verdict] = queue.Queue()
    # readings come from the shared poller (on its fixed grid); each verdict is one line here
    run = GuardedRun(cfg, _wording("watch"), logger=_logger, on_verdict=verdicts.put)
    live = stdout.isatty() and not args.plain
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    width = 0
    metrics: Any = None
    try:
        if args.metrics_port is not None:
            metrics = _serve_metrics(run, args)
            print(f"vastcap-guard: serving Prometheus metrics on {metrics.url}", file=stderr, flush=True)
        future = run.begin()
        if future is None:
            assert run.tripped is not None
            return _fail(run.tripped, args, stderr, stdout)
        run.preflight(future.result())
        n = 0
        while not stop.is_set():
            try:
                verdict = verdicts.get(timeout=0.2)
            except queue.Empty:
                continue
            n += 1
            line = _watch_line(run.guard, _flags(run.guard, verdict))
            if live:
                print("\r" + line.ljust(width), end="", file=stdout, flush=True)
                width = len(line)
            else:
                print(line, file=stdout, flush=True)
            if verdict.action is Action.STOP:
                if live:
                    print(file=stdout)
                assert verdict.error is not None
                return _fail(verdict.error, args, stderr, stdout)
            if args.count and n >= args.count:
                break
    except KeyboardInterrupt:
        if live:
            print(file=stdout)
        return EXIT_INTERRUPTED
    finally:
        run.close()
        if metrics is not None:
            metrics.stop()
    if live:
        print(file=stdout)
    return EXIT_OK


def _serve_metrics(run: GuardedRun, args: argparse.Namespace) -> Any:
    """Serve ``/metrics`` for the watched account (prometheus-client is imported only here)."""
    port = args.metrics_port
    host = args.metrics_host or "127.0.0.1"
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port {port} is not a TCP port (0 to 65535; 0 picks a free one).",
                          setting="--metrics-port")
    try:
        from .metrics import serve
    except ImportError as exc:
        if not (exc.name or "").startswith("prometheus_client"):
            raise
        raise ConfigError("--metrics-port needs prometheus-client: pip install 'vastcap-guard[metrics]'.",
                          setting="--metrics-port") from None
    try:
        return serve(run, host, port)
    except socket.gaierror as exc:
        raise ConfigError(f"--metrics-host {host!r} is not an address of this machine ({exc.strerror}).",
                          setting="--metrics-host") from None
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(f"cannot serve metrics on {host} port {port}: {why}. Choose another --metrics-port "
                          "(or --metrics-host).", setting="--metrics-port") from None


def _parse_account(text: str) -> tuple[str, str]:
    key, sep, amount = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=BALANCE, got {text!r}")
    try:
        Decimal(amount)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"balance must be a number in {text!r}") from None
    return key, amount


def cmd_sandbox(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .sandbox import Sandbox

    accounts = dict(args.account) if args.account else None
    sandbox = Sandbox(accounts, disabled=args.disabled or (), price=args.price,
                      solve_delay=args.solve_delay, host=args.host, port=args.port)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"vastcap-guard: cannot serve on {args.host}:{args.port}: {exc.strerror}", file=stderr)
        return 2
    print(f"VastCap sandbox serving {sandbox.url}", file=stdout)
    print(f"  export VASTCAP_API_URL={sandbox.url}", file=stdout)
    if accounts is None:
        print(f"  export VASTCAP_API_KEY={sandbox.key}   # the default account, $10", file=stdout)
    print("Press Ctrl-C to stop.", file=stdout, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", default=None, metavar="URL",
                        help="API base URL (default: $VASTCAP_API_URL or the public API)")
    common.add_argument("--key-file", metavar="PATH",
                        help="read the API key from this file ('-' for stdin); default: $VASTCAP_API_KEY")
    common.add_argument("--timeout", default="10", metavar="SECONDS",
                        help="seconds for one getBalance attempt (default 10)")

    parser = argparse.ArgumentParser(
        prog="vastcap-guard",
        description="Keep scraping jobs from spending on a VastCap account that cannot pay.",
        epilog="The key is read from $VASTCAP_API_KEY or --key-file, never from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("balance", parents=[common], help="print the account's balance (USD)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_balance)

    p = sub.add_parser("check", parents=[common],
                       help="pre-flight gate: exit 0 when the account can pay, else a documented code")
    p.add_argument("--min-balance", default=str(DEFAULT_MIN_BALANCE), metavar="USD",
                   help="fail below this balance (default 0.001)")
    p.add_argument("--warn-balance", default=None, metavar="USD",
                   help="still pass, but warn on stderr below this balance")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("watch", parents=[common],
                       help="show balance, spend rate and time left, live; exit like check when it can't pay")
    p.add_argument("--interval", default="30", metavar="SECONDS", help="seconds between checks (default 30)")
    p.add_argument("--min-balance", default=str(DEFAULT_MIN_BALANCE), metavar="USD",
                   help="exit below this balance (default 0.001)")
    p.add_argument("--warn-balance", default=None, metavar="USD", help="flag the line below this balance")
    p.add_argument("--warn-minutes", default=None, metavar="MINUTES",
                   help="flag the line when the money lasts fewer minutes than this")
    p.add_argument("--max-failures", default="3", metavar="N",
                   help="consecutive failed checks before exiting 14 (default 3; 0 never)")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N checks (default: run on)")
    p.add_argument("--plain", action="store_true", help="plain log lines even on a terminal")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="also serve Prometheus metrics on http://HOST:PORT/metrics (needs the [metrics] extra)")
    p.add_argument("--metrics-host", default=None, metavar="HOST",
                   help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 serves every interface)")
    p.set_defaults(func=cmd_watch, json=False)

    p = sub.add_parser("sandbox", help="serve a local VastCap API for offline development")
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)")
    p.add_argument("--account", action="append", type=_parse_account, metavar="KEY=BALANCE",
                   help="an account (repeatable); default: one $10 account")
    p.add_argument("--disabled", action="append", metavar="KEY", help="a disabled account (repeatable)")
    p.add_argument("--price", default="0.002", metavar="USD", help="price of one solved task (default 0.002)")
    p.add_argument("--solve-delay", type=float, default=0.0, metavar="SECONDS",
                   help="seconds before a task is ready (default 0)")
    p.set_defaults(func=cmd_sandbox)

    # listed for --help; main() hands `demo ...` to vastcap_guard.demo before parsing
    sub.add_parser("demo", help="run the example crawl against a local sandbox until the guard stops it "
                                "(vastcap-guard demo --help)")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        # the demo has its own options (and --help); argparse.REMAINDER would reject them
        import importlib

        return int(importlib.import_module("vastcap_guard.demo").main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, out, err))
    except ConfigError as exc:
        print(f"vastcap-guard: {exc.reason}: {exc.message}", file=err)
        return exc.exit_code
    except GuardError as exc:
        return _fail(exc, args, err, out)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
