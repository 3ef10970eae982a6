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
from ._secrets import mask_key
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


#: the options of `vastcap-guard sandbox` that only serving takes (default None: "not given")
_SERVE_OPTIONS = {"host": "--host", "port": "--port", "account": "--account", "disabled": "--disabled",
                  "price": "--price", "solve_delay": "--solve-delay"}


def cmd_sandbox(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .sandbox import DEFAULT_PORT, Sandbox

    if args.action is not None:
        given = [flag for dest, flag in _SERVE_OPTIONS.items() if getattr(args, dest) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: options for serving a sandbox (vastcap-guard sandbox "
                              f"[OPTIONS]), not for `sandbox {args.action}`.", setting=given[0])
        return int(args.action_func(args, stdout, stderr))
    host = args.host or "127.0.0.1"
    port = DEFAULT_PORT if args.port is None else args.port
    accounts = dict(args.account) if args.account else None
    sandbox = Sandbox(accounts, disabled=args.disabled or (), price=args.price or "0.002",
                      solve_delay=args.solve_delay or 0.0, host=host, port=port)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"vastcap-guard: cannot serve on {host}:{port}: {exc.strerror}", file=stderr)
        return 2
    print(f"VastCap sandbox serving {sandbox.url}", file=stdout)
    print(f"  export VASTCAP_API_URL={sandbox.url}", file=stdout)
    if accounts is None:
        print(f"  export VASTCAP_API_KEY={sandbox.key}   # the default account, $10", file=stdout)
    print("  from another shell: vastcap-guard sandbox set-balance KEY AMOUNT, sandbox fault METHOD KIND, "
          "sandbox calls (see vastcap-guard sandbox --help)", file=stdout)
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


# -- controlling a running sandbox -----------------------------------------------------------------
#: a sandbox control command could not reach a sandbox (or what answered is not one)
EXIT_NO_SANDBOX = 1


def _sandbox_client(args: argparse.Namespace) -> Any:
    import os

    from .sandbox import DEFAULT_URL, SandboxClient

    url = args.api_url or os.environ.get("VASTCAP_API_URL") or DEFAULT_URL
    where = "--api-url" if args.api_url else "VASTCAP_API_URL" if os.environ.get("VASTCAP_API_URL") else "the default"
    try:
        return SandboxClient(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}. Pass --api-url http://127.0.0.1:PORT/api/solver.",
                          setting="--api-url") from None


def _sandbox_key(args: argparse.Namespace) -> str:
    import os

    key = args.key or clean_key(os.environ.get("VASTCAP_API_KEY") or "")
    if not key:
        raise ConfigError(f"sandbox {args.action}: give the account's KEY (or set VASTCAP_API_KEY).",
                          setting="KEY")
    return key


def _control(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, action: Any) -> int:
    """Run one control request; its outcome as an exit code (0, 2 refused, 1 no sandbox)."""
    from .sandbox import SandboxError

    client = _sandbox_client(args)
    try:
        message = action(client)
    except SandboxError as exc:
        print(f"vastcap-guard: sandbox {args.action}: {exc}", file=stderr)
        return 2 if exc.refused else EXIT_NO_SANDBOX
    except ValueError as exc:
        print(f"vastcap-guard: sandbox {args.action}: {exc}", file=stderr)
        return 2
    if message:
        print(message, file=stdout)
    return EXIT_OK


def _usd(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"expected an amount in USD, got {text!r}") from None
    if not amount.is_finite():
        raise argparse.ArgumentTypeError(f"expected an amount in USD, got {text!r}")
    return amount


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {text!r}")
    return value


def _http_status(text: str) -> int:
    try:
        code = int(text)
    except ValueError:
        code = 0
    if not 100 <= code <= 599:
        raise argparse.ArgumentTypeError(f"expected an HTTP status (100 to 599), got {text!r}")
    return code


def cmd_sandbox_set_balance(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    key = _sandbox_key(args)

    def act(client: Any) -> str:
        client.set_balance(key, args.amount)
        return f"sandbox {client.base_url}: account {mask_key(key)} holds {format_usd(args.amount)}"

    return _control(args, stdout, stderr, act)


def cmd_sandbox_disable(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    key = _sandbox_key(args)
    disabled = args.action == "disable"

    def act(client: Any) -> str:
        client.disable(key, disabled)
        return f"sandbox {client.base_url}: account {mask_key(key)} {'disabled' if disabled else 'enabled'}"

    return _control(args, stdout, stderr, act)


def cmd_sandbox_fault(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    options = {name: getattr(args, name) for name in ("times", "every", "offset", "status", "delay", "body", "size")
               if getattr(args, name) is not None}

    def act(client: Any) -> str:
        client.fault(args.method, args.kind, **options)
        scope = (f"the next {args.times} call(s)" if args.times else "every call") + (
            f", 1 in {args.every}" if args.every else "")
        return f"sandbox {client.base_url}: {args.method} answers with fault {args.kind!r} ({scope})"

    return _control(args, stdout, stderr, act)


def cmd_sandbox_clear_faults(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    def act(client: Any) -> str:
        client.clear_faults(args.method)
        return f"sandbox {client.base_url}: faults cleared ({args.method or 'every method'})"

    return _control(args, stdout, stderr, act)


def cmd_sandbox_calls(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    import time as _time

    def act(client: Any) -> str:
        calls = client.calls(args.method)
        if args.count:
            return str(len(calls))
        if args.json:
            return "\n".join(json.dumps(c.__dict__, ensure_ascii=False) for c in calls)
        lines = []
        for c in calls:
            stamp = _time.strftime("%H:%M:%S", _time.localtime(c.at)) + f".{int(c.at * 1000) % 1000:03d}"
            lines.append(f"{stamp}  {c.method:<13}  {c.key}  {('fault ' + c.fault) if c.fault else 'ok'}")
        return "\n".join(lines)

    return _control(args, stdout, stderr, act)


def cmd_sandbox_reset_calls(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    def act(client: Any) -> str:
        client.reset_calls()
        return f"sandbox {client.base_url}: call log cleared"

    return _control(args, stdout, stderr, act)


def _add_sandbox_actions(p: argparse.ArgumentParser) -> None:
    from .sandbox import FAULT_KINDS, METHODS

    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--api-url", default=None, metavar="URL",
                     help="the sandbox's API URL (default: $VASTCAP_API_URL, else http://127.0.0.1:8787/api/solver)")
    actions = p.add_subparsers(dest="action", metavar="ACTION",
                               title="control a running sandbox (vastcap-guard sandbox ACTION --help)")

    def action(name: str, what: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, prog=f"vastcap-guard sandbox {name}", parents=[url], help=what)

    a = action("set-balance", "set an account's balance (an unknown key is created)")
    a.add_argument("key", nargs="?", metavar="KEY", help="the account (default: $VASTCAP_API_KEY)")
    a.add_argument("amount", type=_usd, metavar="AMOUNT", help="the new balance in USD")
    a.set_defaults(action_func=cmd_sandbox_set_balance)

    for name, what in (("disable", "disable an account (getBalance answers ERROR_ACCOUNT_DISABLED)"),
                       ("enable", "enable a disabled account again")):
        a = action(name, what)
        a.add_argument("key", nargs="?", metavar="KEY", help="the account (default: $VASTCAP_API_KEY)")
        a.set_defaults(action_func=cmd_sandbox_disable)

    a = action("fault", "make a method misbehave (newest fault first)")
    a.add_argument("method", choices=METHODS, metavar="METHOD", help=", ".join(METHODS))
    a.add_argument("kind", choices=FAULT_KINDS, metavar="KIND", help=", ".join(FAULT_KINDS))
    a.add_argument("--times", type=_count, metavar="N", help="only the next N calls (default: every call)")
    a.add_argument("--every", type=_count, metavar="N", help="only one call in N (the 1st, N+1th...)")
    a.add_argument("--offset", type=int, metavar="N", help="with --every: shift which calls fail")
    a.add_argument("--status", type=_http_status, metavar="CODE", help="HTTP status (status, html, body faults)")
    a.add_argument("--delay", type=_seconds, metavar="SECONDS", help="seconds (latency; hang, default 30)")
    a.add_argument("--body", metavar="TEXT", help="the exact body (status and body faults)")
    a.add_argument("--size", type=_count, metavar="BYTES", help="body size of the huge fault (default 4 MiB)")
    a.set_defaults(action_func=cmd_sandbox_fault)

    a = action("clear-faults", "remove the faults (of one method, or all)")
    a.add_argument("method", nargs="?", choices=METHODS, metavar="METHOD", help="only this method's faults")
    a.set_defaults(action_func=cmd_sandbox_clear_faults)

    a = action("calls", "print the sandbox's call log (keys masked)")
    a.add_argument("--method", choices=METHODS, metavar="METHOD", help="only calls of this method")
    shown = a.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="one JSON object per call")
    shown.add_argument("--count", action="store_true", help="print only how many calls")
    a.set_defaults(action_func=cmd_sandbox_calls)

    a = action("reset-calls", "empty the call log")
    a.set_defaults(action_func=cmd_sandbox_reset_calls)


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

    p = sub.add_parser(
        "sandbox", help="serve a local VastCap API for offline development, or control a running one",
        usage="%(prog)s [--host HOST] [--port PORT] [--account KEY=BALANCE] [--disabled KEY] [--price USD] "
              "[--solve-delay SECONDS]\n       %(prog)s ACTION [--api-url URL] ...",
        description="Without ACTION: serve a local VastCap API until Ctrl-C. With ACTION: change a running "
                    "sandbox (the one at --api-url, $VASTCAP_API_URL or http://127.0.0.1:8787/api/solver).",
    )
    p.add_argument("--host", default=None, help="loopback address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8787; 0 picks a free one)")
    p.add_argument("--account", action="append", type=_parse_account, metavar="KEY=BALANCE",
                   help="an account (repeatable); default: one $10 account")
    p.add_argument("--disabled", action="append", metavar="KEY", help="a disabled account (repeatable)")
    p.add_argument("--price", default=None, metavar="USD", help="price of one solved task (default 0.002)")
    p.add_argument("--solve-delay", type=float, default=None, metavar="SECONDS",
                   help="seconds before a task is ready (default 0)")
    _add_sandbox_actions(p)
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
    except BrokenPipeError:
        # the reader went away (`vastcap-guard sandbox calls | head`): no traceback, and none at exit
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
