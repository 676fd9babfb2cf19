"""The command line: every (sub)command, its options and their argument types.

Parsing only: building the parser imports nothing beyond argparse (`rotator --help` stays
fast); what a command does is in the other modules of rotator/cli/.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rotator import __version__
from rotator.envsettings import LOG_LEVELS

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotator", description="Rotate MotherDuck service-account tokens safely."
    )
    parser.register("action", "parsers", _LazySubParsers)
    parser.add_argument("--version", action="version", version=f"rotator {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    assert isinstance(sub, _LazySubParsers)
    for name, (text, fill) in _COMMANDS.items():
        sub.add_lazy(name, fill, help=text)
    sim = sub.add_parser("simulator", help="run the local MotherDuck simulator", add_help=False)
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    return parser


class _LazySubParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands whose options are added when that subcommand is parsed.

    Each option added builds a help formatter (argparse checks its metavar): adding every
    command's options was half the parser's cost (~1 ms of ~2 warm, more in a fresh
    process) at every start, and a command line names one command. The help
    texts of the commands (`rotator --help`) are there from the start, and what parsing,
    errors and `rotator COMMAND --help` show is unchanged: a command's options, then the
    global ones, are in place before its arguments are read.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fill: dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def add_lazy(
        self, name: str, fill: Callable[[argparse.ArgumentParser], None], **kwargs: Any
    ) -> argparse.ArgumentParser:
        child: argparse.ArgumentParser = self.add_parser(name, **kwargs)
        self._fill[name] = fill
        return child

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        fill = self._fill.pop(values[0], None) if values else None
        if fill is not None:
            child = self.choices[values[0]]
            fill(child)
            _global_options(child, top=False)
        super().__call__(parser, namespace, values, option_string)


def _rotate(rotate: argparse.ArgumentParser) -> None:
    rotate.add_argument("usernames", nargs="*", metavar="USERNAME")
    rotate.add_argument("--all", action="store_true", help="every configured account")
    rotate.add_argument("--force", action="store_true", help="rotate even if not due")
    rotate.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    rotate.add_argument("--revoke-now", action="store_true", help="skip the remaining grace")
    rotate.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="at most N MotherDuck requests in flight (default 4); up to N + N/2 accounts "
        "under way at once",
    )
    rotate.add_argument("--json", action="store_true", help="one JSON object per account")
    rotate.add_argument("--metrics-file", metavar="PATH", help="write Prometheus textfile metrics")
    rotate.add_argument("--shard", type=_shard, metavar="I/N", help="only shard I of N (0-based)")
    rotate.add_argument(
        "--processes",
        type=_processes,
        default="auto",
        metavar="N|auto",
        help="split the accounts across N worker processes (default auto: one per core "
        "from 32 accounts; 1: all in this process); on Linux each process is bound to a "
        "CPU of its own (ROTATOR_BIND_CPUS=0 or off: not)",
    )


def _status(status: argparse.ArgumentParser) -> None:
    status.add_argument("usernames", nargs="*", metavar="USERNAME")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--drift", action="store_true", help="also check drift (reads backends and MotherDuck)"
    )
    status.add_argument("--metrics-file", metavar="PATH", help="write Prometheus textfile metrics")
    status.add_argument("--shard", type=_shard, metavar="I/N", help="only shard I of N (0-based)")


def _drift(drift: argparse.ArgumentParser) -> None:
    drift.add_argument("usernames", nargs="*", metavar="USERNAME")
    drift.add_argument("--json", action="store_true", help="one JSON object per account")
    drift.add_argument(
        "--fail-on",
        choices=["any", "critical"],
        default="any",
        help="exit 1 on any warning/critical finding (default) or on critical ones only",
    )


def _history(history: argparse.ArgumentParser) -> None:
    history.add_argument("username", metavar="USERNAME")
    history.add_argument("--json", action="store_true")


def _abort(abort: argparse.ArgumentParser) -> None:
    abort.add_argument("run_id", metavar="RUN_ID")
    abort.add_argument(
        "--skip-backend",
        action="append",
        default=[],
        metavar="LABEL",
        help="a backend of the run that left the config: do not roll it back (repeatable)",
    )
    abort.add_argument("--json", action="store_true")


def _revoke(revoke: argparse.ArgumentParser) -> None:
    revoke.add_argument("username", metavar="USERNAME")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.add_argument(
        "--force", action="store_true", help="revoke even a token the state or a backend uses"
    )
    revoke.add_argument("--json", action="store_true")


def _adopt(adopt: argparse.ArgumentParser) -> None:
    adopt.add_argument("username", metavar="USERNAME")
    adopt.add_argument("--token-id", required=True)
    adopt.add_argument(
        "--force", action="store_true", help="adopt even if the backends serve another token"
    )
    adopt.add_argument("--json", action="store_true")


def _tokens(tokens: argparse.ArgumentParser) -> None:
    tokens.add_argument("username", metavar="USERNAME")
    tokens.add_argument("--json", action="store_true")


def _config(config: argparse.ArgumentParser) -> None:
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    validate = config_sub.add_parser(
        "validate", help="check the config file and print every problem"
    )
    _global_options(validate, top=False)


def _state(state: argparse.ArgumentParser) -> None:
    state_sub = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    init = state_sub.add_parser("init", help="create the DynamoDB table (or the state directory)")
    _global_options(init, top=False)
    prune = state_sub.add_parser("prune", help="remove finished runs past [state] keep_runs")
    prune.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    prune.add_argument("--keep", metavar="AGE|COUNT", help="override keep_runs (90d, or 20)")
    prune.add_argument("--json", action="store_true", help="one JSON object per removed run")
    _global_options(prune, top=False)


# Every command but `simulator`: its help line and what adds its options (in this order
# in `rotator --help`).
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "rotate": ("rotate (or resume) accounts that are due", _rotate),
    "status": ("token age, next due date, pending revoke, last run", _status),
    "drift": ("compare backends, state and MotherDuck (reads only)", _drift),
    "history": ("past runs of an account", _history),
    "abort": ("roll back an unfinished run", _abort),
    "revoke": ("revoke one token (refused while anything uses it)", _revoke),
    "adopt": ("record an existing token id as the current token", _adopt),
    "tokens": ("list an account's live tokens (metadata only)", _tokens),
    "config": ("configuration helpers", _config),
    "state": ("state store helpers", _state),
}


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--config, --log-format, --log-level: before the command, or after it on any command.

    Below the top level they default to SUPPRESS, so a value given before the command
    is kept unless the same option is given again after it.
    """

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        default=default(None),
        help="config file (default: $ROTATOR_CONFIG, else ./rotator.toml)",
    )
    parser.add_argument(
        "--log-format", choices=["auto", "console", "json"], default=default("auto")
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=default("info")
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _processes(text: str) -> int | None:
    """`auto` (None: decided from the cores and the accounts) or a whole number >= 1."""
    return None if text == "auto" else _positive_int(text)


def _shard(text: str) -> tuple[int, int]:
    from rotator.schedule import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
