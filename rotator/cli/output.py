"""What the commands write: error lines on stderr, outcomes as a table or JSON, metrics.

Output of more than one command; a command's own table or document stays with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from rotator.errors import RotatorError
from rotator.tables import plain_table, short_id

if TYPE_CHECKING:
    from rotator.engine.workflow import Engine, Outcome

__all__ = ["print_outcomes", "say", "write_metrics"]


def say(err: TextIO, line: str) -> None:
    err.write(line + "\n")
    err.flush()


def print_outcomes(outcomes: Sequence[Outcome], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        for o in outcomes:
            doc = {
                "account": o.account,
                "run_id": o.run_id,
                "state": o.state or o.result,
                "result": o.result,
                "old_token_id": o.old_token_id,
                "new_token_id": o.new_token_id,
                "revoked": o.revoked,
                "revoke_not_before": o.revoke_not_before,
                "message": o.message,
            }
            out.write(json.dumps(doc) + "\n")
        return
    rows = [
        [o.account, o.result, short_id(o.old_token_id), short_id(o.new_token_id), o.message]
        for o in outcomes
    ]
    plain_table(out, ["ACCOUNT", "RESULT", "OLD", "NEW", "MESSAGE"], rows, keep=(0,))


def write_metrics(
    engine: Engine,
    names: Sequence[str],
    path: str,
    *,
    live: bool,
    drift: dict[str, Any] | None = None,
) -> None:
    """Write the textfile; a failure is logged and never changes the command's result."""
    from pathlib import Path

    from rotator.ops.metrics import write_metrics_file

    try:
        write_metrics_file(engine, names, Path(path), live=live, drift=drift)
    except (OSError, RotatorError) as exc:
        import structlog

        structlog.get_logger("rotator.cli").warning(
            "metrics.write_failed", path=path, error=str(exc)
        )
