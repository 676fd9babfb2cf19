"""The `rotator` command: main(), the early Ctrl-C, stream and logging set-up, dispatch.

The package, one job a module (imports flow down this list, never back to this file):
    parser.py             the command line: subcommands, global options, argument types
    admin.py              config validate, state init / prune, the simulator hand-off
    operator_commands.py  abort, revoke, adopt
    views.py              status, drift, history, tokens (read only)
    rotate.py             rotate: selection, --processes / --shard dispatch, outcomes, metrics
    output.py             what several commands write: say, print_outcomes, write_metrics
    wiring.py             args -> config -> engine (admin token), the admin-token probe
    exitcodes.py          the exit-status table, exit_code_for, worst
Start-up: each command imports what it needs inside its function, so `rotator --help`
loads no pydantic, httpx, structlog, rich or engine; and only the module of the command
that runs is imported (`rotate` is the critical path of a scheduled run: admin.py, views.py
and operator_commands.py are not loaded for it). The names tests and callers import from
`rotator.cli` are re-exported here (__all__), those of the other command modules made on
first use.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO, cast

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
from rotator.cli.output import say
from rotator.cli.parser import build_parser
from rotator.cli.rotate import cmd_rotate
from rotator.cli.wiring import make_engine, probe_admin_token
from rotator.engine import interrupt
from rotator.errors import RotatorError
from rotator.util import gcpause
from rotator.util.safeio import SafeStream

if TYPE_CHECKING:
    from rotator.cli.admin import cmd_config, cmd_state
    from rotator.cli.operator_commands import cmd_abort, cmd_adopt, cmd_revoke
    from rotator.cli.views import cmd_drift, cmd_history, cmd_status, cmd_tokens

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
    "cmd_config",
    "cmd_drift",
    "cmd_history",
    "cmd_revoke",
    "cmd_rotate",
    "cmd_state",
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
    program = argv is None  # the `rotator` process itself, not a caller in-process
    if program:
        gcpause.pause()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers are in place (parsing, imports): nothing acted.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("rotator: stopped by SIGINT before starting; nothing was changed\n")
        return 128 + int(signal.SIGINT)
    finally:
        gcpause.resume()  # a command that built no engine
        if program:
            gcpause.exiting()


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulator"]:
        from rotator.cli.admin import run_simulator

        return run_simulator(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    from rotator.util.startup import defer_import, import_structlog

    if argv is None:
        # The rotator process itself (not a caller in-process): structlog imports asyncio
        # for its async loggers only (~8 ms); rotator is synchronous. A plugin or hook
        # module that uses asyncio still gets it, made at its first use.
        defer_import("asyncio")
    console = args.log_format == "console" or (args.log_format == "auto" and _tty(sys.stderr))
    import_structlog(want_rich=console)
    from rotator import log as rlog

    # No secret on stdout, whatever prints there; a reader that went away stops nothing.
    out = cast(TextIO, rlog.RedactingStream(cast(TextIO, SafeStream(sys.stdout))))
    err = cast(TextIO, SafeStream(sys.stderr))
    rlog.configure(args.log_format, level=args.log_level, stream=err)
    rlog.register_known_secrets()  # the config's own credentials follow in build_engine
    interrupt.clear()
    handler = _handler(args.command)
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


Handler = Callable[[argparse.Namespace, TextIO], int]

# Each command's module and function, imported when that command runs.
_COMMANDS: dict[str, tuple[str, str]] = {
    "state": ("admin", "cmd_state"),
    "rotate": ("rotate", "cmd_rotate"),
    "status": ("views", "cmd_status"),
    "drift": ("views", "cmd_drift"),
    "history": ("views", "cmd_history"),
    "abort": ("operator_commands", "cmd_abort"),
    "revoke": ("operator_commands", "cmd_revoke"),
    "adopt": ("operator_commands", "cmd_adopt"),
    "tokens": ("views", "cmd_tokens"),
    "config": ("admin", "cmd_config"),
}
_LAZY = {function: module for module, function in _COMMANDS.values()}


def _handler(command: str) -> Handler:
    module, function = _COMMANDS[command]
    handler: Handler = getattr(importlib.import_module(f"rotator.cli.{module}"), function)
    return handler


def __getattr__(name: str) -> Any:
    """The re-exported command functions of the modules not imported at start-up."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"rotator.cli.{module}"), name)
