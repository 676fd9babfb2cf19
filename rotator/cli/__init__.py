"""The `rotator` command: argument parsing, wiring, output and exit statuses.

Exit statuses: rotator/cli/exitcodes.py has the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO, cast

from rotator.cli.exitcodes import (
    EXIT_ATTENTION,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    exit_code_for,
    worst,
)
from rotator.cli.operator import cmd_abort, cmd_adopt, cmd_revoke
from rotator.cli.output import say
from rotator.cli.parser import build_parser
from rotator.cli.rotate import cmd_rotate
from rotator.cli.views import cmd_drift, cmd_history, cmd_status, cmd_tokens
from rotator.cli.wiring import command_config, make_engine, probe_admin_token
from rotator.engine import interrupt
from rotator.errors import ConfigError, RotatorError
from rotator.tables import format_time, plain_table
from rotator.util.safeio import SafeStream

if TYPE_CHECKING:
    # Start-up: each command imports what it needs (`--help` loads no pydantic or httpx).
    from rotator.config import Config

__all__ = [
    "EXIT_ATTENTION",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "cmd_abort",
    "cmd_adopt",
    "cmd_drift",
    "cmd_history",
    "cmd_revoke",
    "cmd_rotate",
    "cmd_status",
    "cmd_tokens",
    "exit_code_for",
    "main",
    "make_engine",
    "probe_admin_token",
    "worst",
]

# Commands that may change something: SIGINT/SIGTERM stop them at a step boundary and
# they still report every account. The others only read and stop at once.
_ACTING = frozenset({"rotate", "abort", "adopt", "revoke"})


def _tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers are in place (parsing, imports): nothing acted.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("rotator: stopped by SIGINT before starting; nothing was changed\n")
        return 128 + int(signal.SIGINT)


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulator"]:
        from rotator.simulator.cli import main as simulator_main

        return simulator_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    from rotator.util.startup import import_structlog

    console = args.log_format == "console" or (args.log_format == "auto" and _tty(sys.stderr))
    import_structlog(want_rich=console)
    from rotator import log as rlog

    # No secret on stdout, whatever prints there; a reader that went away stops nothing.
    out = cast(TextIO, rlog.RedactingStream(cast(TextIO, SafeStream(sys.stdout))))
    err = cast(TextIO, SafeStream(sys.stderr))
    rlog.configure(args.log_format, level=args.log_level, stream=err)
    rlog.register_known_secrets()  # the config's own credentials follow in build_engine
    interrupt.clear()
    handler: Callable[[argparse.Namespace, TextIO], int] = _COMMANDS[args.command]
    acting = args.command in _ACTING
    signals = interrupt.cooperative_signals() if acting else interrupt.abrupt_signals()
    try:
        with signals:
            code = handler(args, out)
    except RotatorError as exc:
        say(err, f"rotator: error: {rlog.redact(str(exc))}")
        return exit_code_for(exc)
    except Exception as exc:
        # Outside any account's run (status, history, drift reading a state document of
        # the wrong shape; a bug): the same one line as contained(), never a traceback.
        from rotator.engine.containment import describe

        say(err, f"rotator: error: {describe(exc)}")
        return EXIT_ATTENTION
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, interrupt.Interrupted) else signal.SIGINT
        say(err, f"rotator: stopped by {signal.Signals(signum).name}; nothing was changed")
        return 128 + int(signum)
    finally:
        out.flush()
    if acting and interrupt.stop_requested() and code != EXIT_OK:
        say(
            err,
            f"rotator: stopped by {interrupt.stop_reason()}; "
            "the next `rotator rotate` resumes what was interrupted or not started",
        )
    return code


# -- commands ------------------------------------------------------------------------------


def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    from rotator.config import default_config_path, load_config

    path = default_config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            out.write(f"{problem}\n")
        raise ConfigError(f"{path}: {len(exc.problems)} problem(s)") from None
    engine = make_engine(config)
    for account in config.accounts:
        engine.backends(account)
        engine.checks(account)
    out.write(f"{path}: ok ({len(config.accounts)} account(s))\n")
    return EXIT_OK


def cmd_state(args: argparse.Namespace, out: TextIO) -> int:
    config = command_config(args)
    if args.state_command == "prune":
        return _state_prune(args, config, out)
    if config.state.store == "dynamodb":
        from rotator.assembly import table_name
        from rotator.state.dynamodb import create_table

        out.write(
            create_table(
                table_name(config),
                region=config.state.region,
                endpoint_url=config.state.endpoint_url,
            )
            + "\n"
        )
        return EXIT_OK
    from rotator.state.file import FileStore

    store = FileStore(config.state_path)
    store.fingerprint_key()
    out.write(f"state directory {config.state_path} ready\n")
    return EXIT_OK


def _state_prune(args: argparse.Namespace, config: Config, out: TextIO) -> int:
    """Exit 0 done (or nothing to do), 3 when an account was skipped because it is leased."""
    from rotator.ops.retention import PrunableStore, parse_keep, prune_store

    text = args.keep if args.keep is not None else config.state.keep_runs
    if text is None:
        raise ConfigError("state.keep_runs: not set; set it (e.g. \"90d\" or 20) or pass --keep")
    try:
        keep = parse_keep(text)
    except ValueError as exc:
        field = "--keep" if args.keep is not None else "state.keep_runs"
        raise ConfigError(f"{field}: {exc}") from None
    engine = make_engine(config)
    store = engine.store
    if not isinstance(store, PrunableStore):
        raise ConfigError(f"{store.describe()} cannot be pruned")
    report = prune_store(
        store,
        keep=keep,
        now=engine.clock(),
        owner=engine.owner,
        lease_ttl=config.defaults.lease_ttl,
        dry_run=args.dry_run,
    )
    action = "would_remove" if args.dry_run else "removed"
    when = (lambda t: t.isoformat()) if args.json else format_time  # one format for people
    rows = [[r.account, r.run_id, r.state, when(r.finished_at), action] for r in report.removed]
    rows += [[account, "-", "-", "-", f"skipped: {why}"] for account, why in report.skipped]
    if args.json:
        for row in rows:
            keys = ("account", "run_id", "state", "finished_at", "action")
            out.write(json.dumps(dict(zip(keys, row, strict=True))) + "\n")
    else:
        plain_table(out, ["ACCOUNT", "RUN", "STATE", "FINISHED", "ACTION"], rows, keep=(3,))
    verb = "would remove" if args.dry_run else "removed"
    say(
        cast(TextIO, SafeStream(sys.stderr)),
        f"rotator: {verb} {len(report.removed)} run(s) ({keep.describe()} kept)",
    )
    return EXIT_INCOMPLETE if report.skipped else EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "state": cmd_state,
    "rotate": cmd_rotate,
    "status": cmd_status,
    "drift": cmd_drift,
    "history": cmd_history,
    "abort": cmd_abort,
    "revoke": cmd_revoke,
    "adopt": cmd_adopt,
    "tokens": cmd_tokens,
    "config": cmd_config,
}
