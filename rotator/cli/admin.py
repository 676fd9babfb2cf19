"""The set-up commands: `config validate`, `state init`, `state prune` and `simulator`.

`rotator simulator` is dispatched before parsing (rotator/cli/__init__.py): its flags are
the simulator's own (rotator/simulator/cli.py), passed through untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO, cast

from rotator.cli.exitcodes import EXIT_INCOMPLETE, EXIT_OK
from rotator.cli.output import say
from rotator.cli.wiring import command_config, make_engine
from rotator.errors import ConfigError
from rotator.tables import format_time, plain_table
from rotator.util.safeio import SafeStream

if TYPE_CHECKING:
    from rotator.config import Config

__all__ = ["cmd_config", "cmd_state", "run_simulator"]


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
    from rotator.config.keep import parse_keep
    from rotator.ops.retention import PrunableStore, prune_store

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


def run_simulator(argv: Sequence[str]) -> int:
    """`rotator simulator ARGS`: the local MotherDuck simulator, imported only for it."""
    from rotator.simulator.cli import main as simulator_main

    return simulator_main(argv)
