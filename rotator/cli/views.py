"""The commands that only read: status, drift, history and tokens.

Each prints a table for a person or one JSON object per line; none changes anything, so
SIGINT/SIGTERM stop them at once (rotator/cli/__init__.py).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from rotator.cli.exitcodes import EXIT_FAILED, EXIT_OK
from rotator.cli.output import write_metrics
from rotator.cli.wiring import command_config, make_engine
from rotator.errors import ConfigError
from rotator.ops.status_view import attention_lines, attention_of
from rotator.tables import format_time, plain_table, short_id

if TYPE_CHECKING:
    from rotator.engine.workflow import Engine

__all__ = ["cmd_drift", "cmd_history", "cmd_status", "cmd_tokens"]


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from rotator.ops.fleet import select_shard
    from rotator.ops.status_view import (
        STATUS_HEADER,
        attention_lines,
        render_table,
        status_doc,
        status_rows,
    )

    config = command_config(args)
    if args.shard and args.usernames:
        raise ConfigError("give account names or --shard, not both")
    names = [config.account(n).username for n in args.usernames] or [
        a.username for a in config.accounts
    ]
    names = select_shard(names, args.shard)
    engine = make_engine(config)
    reports = _drift_reports(engine, names) if args.drift else {}
    docs = [status_doc(engine, name, reports.get(name)) for name in names]
    if args.json:
        for doc in docs:
            out.write(json.dumps(doc) + "\n")
    else:
        header, rows = list(STATUS_HEADER), status_rows(docs)
        if not args.drift:  # the DRIFT column is blank without --drift: leave it out
            header, rows = header[:-1], [row[:-1] for row in rows]
        render_table(out, header, rows, title="rotator status")
        out.writelines(f"{line}\n" for line in attention_lines([d["attention"] for d in docs]))
    if args.metrics_file:
        write_metrics(engine, names, args.metrics_file, live=False, drift=reports)
    return EXIT_OK


def _drift_reports(engine: Engine, names: Sequence[str]) -> dict[str, Any]:
    from rotator.ops.drift import check_account

    return {name: check_account(engine, engine.config.account(name)) for name in names}


def cmd_drift(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 0 clean, 1 drift at or above --fail-on, 2 usage/config/credential errors."""
    from rotator.ops.status_view import DRIFT_HEADER, drift_rows, render_table

    config = command_config(args)
    names = [config.account(n).username for n in args.usernames] or [
        a.username for a in config.accounts
    ]
    if not names:
        raise ConfigError(f"{config.source}: no [[accounts]] configured")
    engine = make_engine(config)
    reports = list(_drift_reports(engine, names).values())
    if args.json:
        for report in reports:
            out.write(json.dumps(report.to_dict()) + "\n")
    else:
        render_table(out, DRIFT_HEADER, drift_rows(reports), title="rotator drift")
    return EXIT_FAILED if any(r.fails(args.fail_on) for r in reports) else EXIT_OK


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    config = command_config(args)
    engine = make_engine(config)
    name = config.account(args.username).username
    runs = [engine.load_run(rid) for rid in reversed(engine.account_record(name).runs)]
    docs = [r.to_doc() for r in runs if r is not None]
    if args.json:
        for doc in docs:
            out.write(json.dumps(doc) + "\n")
        return EXIT_OK
    rows, notes = [], []
    for d in docs:
        state = {"failed_needs_attention": "needs_attention"}.get(d["state"], d["state"])
        rows.append([d["run_id"], format_time(d["started_at"]), state])
        tokens = (
            f"tokens {short_id((d['old_token'] or {}).get('id'))} -> "
            f"{short_id((d['new_token'] or {}).get('id'))}"
        )
        notes.append(f"{tokens}; failure: {d['failure']}" if d["failure"] else tokens)
    plain_table(out, ["RUN", "STARTED", "STATE"], rows, keep=(0,), notes=notes)
    out.writelines(f"{line}\n" for line in attention_lines([attention_of(r, name) for r in runs]))
    return EXIT_OK


def cmd_tokens(args: argparse.Namespace, out: TextIO) -> int:
    config = command_config(args)
    engine = make_engine(config)
    tokens = engine.client.list_tokens(args.username)
    if args.json:
        for t in tokens:
            doc = asdict(t)
            for key in ("created_ts", "expire_at"):
                doc[key] = doc[key].isoformat() if doc[key] else None
            out.write(json.dumps(doc) + "\n")
        return EXIT_OK
    rows = [[t.id, format_time(t.created_ts), format_time(t.expire_at, "never")] for t in tokens]
    notes = [f"name {t.name or '-'}, {t.token_type}" for t in tokens]
    plain_table(out, ["ID", "CREATED", "EXPIRES"], rows, keep=(0,), notes=notes)
    return EXIT_OK
