"""The commands a person uses on one run or token: abort, revoke and adopt.

They may change something, so SIGINT/SIGTERM stop them at a step boundary
(rotator/cli/__init__.py); what each may do to an unfinished run is rotator/engine/safety.py.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from rotator.cli.exitcodes import EXIT_OK
from rotator.cli.output import print_outcomes
from rotator.cli.wiring import command_config, make_engine, probe_admin_token
from rotator.errors import ConfigError

__all__ = ["cmd_abort", "cmd_adopt", "cmd_revoke"]


def cmd_abort(args: argparse.Namespace, out: TextIO) -> int:
    config = command_config(args)
    engine = make_engine(config)
    probe_admin_token(engine)
    run = engine.load_run(args.run_id)
    if run is None:
        raise ConfigError(f"no run {args.run_id} in {engine.store.describe()}")
    outcome = engine.abort(run.account, run.run_id, skip_backends=args.skip_backend)
    print_outcomes([outcome], out, as_json=args.json)
    return outcome.exit_code


def cmd_revoke(args: argparse.Namespace, out: TextIO) -> int:
    config = command_config(args)
    engine = make_engine(config)
    outcome = engine.revoke(config.account(args.username).username, args.token_id, force=args.force)
    print_outcomes([outcome], out, as_json=args.json)
    return outcome.exit_code


def cmd_adopt(args: argparse.Namespace, out: TextIO) -> int:
    config = command_config(args)
    engine = make_engine(config)
    probe_admin_token(engine)
    outcome = engine.adopt(args.username, args.token_id, force=args.force)
    print_outcomes([outcome], out, as_json=args.json)
    return EXIT_OK
