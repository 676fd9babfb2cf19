"""`rotator status` and `rotator drift` as pictures: documents, and tables for people.

`status_doc()` turns an account's state into a JSON-ready dict (existing keys kept:
tests and scripts read `current_token_id`, `pending_revoke_at`, ...). `render_table()`
draws rows with rich when the output is a terminal and as a plain aligned table
otherwise (pipes, cron mail, tests); rich is imported only on a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from rotator import tables
from rotator.durations import format_duration
from rotator.engine.runrecord import Run, RunState
from rotator.schedule import decide
from rotator.tables import format_time, short_id

if TYPE_CHECKING:
    from rotator.engine.workflow import Engine
    from rotator.ops.drift import DriftReport

__all__ = [
    "attention_lines",
    "attention_of",
    "drift_rows",
    "render_table",
    "status_doc",
    "status_rows",
]

STATUS_HEADER = ("ACCOUNT", "TOKEN", "AGE", "NEXT DUE", "LAST RUN", "DRIFT")
DRIFT_HEADER = ("ACCOUNT", "SEVERITY", "CODE", "BACKEND", "DETAIL")
_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan", "ok": "green"}


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f}d"


def status_doc(engine: Engine, name: str, drift: DriftReport | None = None) -> dict[str, Any]:
    """One account's status (reads the state store only; `drift` adds the drift columns)."""
    account = engine.config.account(name)
    policy = account.policy
    record = engine.account_record(name)
    current = record.current_token
    active = engine.load_run(record.active_run_id) if record.active_run_id else None
    if active is not None and active.terminal:
        active = None
    now = engine.clock()
    age_seconds = None
    if current and current.created_ts:
        age_seconds = (now - datetime.fromisoformat(current.created_ts)).total_seconds()
    # The next due time honours the spread offset and the window (rotator/schedule.py).
    decision = decide(
        account=account.username,
        created_ts=current.created_ts if current else None,
        expire_at=current.expire_at if current else None,
        has_token=current is not None,
        now=now,
        rotate_after=policy.rotate_after,
        rotate_before_expiry=policy.rotate_before_expiry,
        window=policy.window,
        spread=policy.spread,
    )
    due_at = decision.at
    return {
        "account": name,
        "current_token_id": current.id if current else None,
        "token_age": _days(age_seconds) if age_seconds is not None else None,
        "token_age_seconds": age_seconds,
        "created_ts": current.created_ts if current else None,
        "expire_at": current.expire_at if current else None,
        "rotate_after": format_duration(policy.rotate_after),
        "rotate_after_seconds": policy.rotate_after.total_seconds(),
        "next_due_at": due_at.isoformat(timespec="seconds") if due_at else None,
        "due": active is None and decision.due,
        "due_reason": decision.reason,
        "window": policy.window,
        "spread": format_duration(policy.spread) if policy.spread else None,
        "last_run_id": record.last_run_id,
        "last_state": record.last_state,
        "last_outcome": _outcome(record.last_state, engine, record.last_run_id),
        "last_finished_at": record.last_finished_at,
        "last_success_at": record.last_success_at,
        "active_run": f"{active.run_id} ({active.state.value})" if active else None,
        "active_state": active.state.value if active else None,
        "pending_revoke_at": active.revoke_not_before if active else None,
        "drift": (drift.worst or "clean") if drift is not None else None,
        "drift_findings": [f.code for f in drift.findings] if drift is not None else None,
        "attention": attention_of(active, name),
    }


def attention_of(run: Run | None, account: str) -> dict[str, Any] | None:
    """An unfinished run a person must act on: what stopped it and each step left, or None.

    That is a run in `failed_needs_attention`, or one stopped without a state change (a
    config edit it cannot go on with) whose record lists what is left.
    """
    if run is None or run.terminal:
        return None
    if run.state is not RunState.FAILED_NEEDS_ATTENTION and not run.remaining:
        return None
    return {
        "account": account,
        "run_id": run.run_id,
        "state": run.state.value,
        "failure": run.failure,
        "remaining": list(run.remaining),
    }


def attention_lines(items: Sequence[dict[str, Any] | None]) -> list[str]:
    """Lines for people, below a table: each needs-attention run and its remaining steps."""
    lines = []
    for item in items:
        if item is None:
            continue
        lines.append(
            f"{item['account']}: run {item['run_id']} needs attention ({item['state']}): "
            f"{item['failure'] or 'stopped'}"
        )
        lines += [f"  still to do: {step}" for step in item["remaining"]]
    return lines


def _outcome(state: str | None, engine: Engine, run_id: str | None) -> str | None:
    if state == "completed" and run_id:
        run = engine.load_run(run_id)
        return "adopted" if run is not None and run.old_token is None else "completed"
    return {"failed_needs_attention": "needs_attention"}.get(state or "", state)


def status_rows(docs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One 80-column row per account: age against the policy, short ids, one time format."""
    rows = []
    for d in docs:
        due = format_time(d["next_due_at"]) if d["next_due_at"] else "-"
        if d["current_token_id"] is None or (d["due"] and d["next_due_at"]):
            due = "due now"
        done = [d["last_outcome"]] if d["last_outcome"] else []
        if d["active_run"]:
            done.append(f"running {d['active_state']}")
        last = "; ".join(done) or "-"
        if d["pending_revoke_at"]:
            last += f"; revoke at {format_time(d['pending_revoke_at'])}"
        rows.append(
            [
                d["account"],
                short_id(d["current_token_id"]),
                f"{d['token_age'] or '-'}/{d['rotate_after']}",
                due,
                last,
                d["drift"] or "",
            ]
        )
    return rows


def drift_rows(reports: Sequence[DriftReport]) -> list[list[str]]:
    rows = []
    for report in reports:
        if not report.findings:
            rows.append([report.account, "ok", "-", "-", "no drift"])
        for f in report.findings:
            rows.append([report.account, f.severity, f.code, f.backend or "-", f.message])
        for note in report.expected:
            rows.append([report.account, "ok", "expected", "-", note])
    return rows


def render_table(
    out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None
) -> None:
    """A rich table on a terminal; a plain, aligned, uncoloured one anywhere else."""
    if _isatty(out):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, header_style="bold")
        for name in header:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(_styled(cell) for cell in row))
        Console(file=out).print(table)
        return
    plain_table(out, header, rows)


def plain_table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns aligned with spaces and wrapped to 80 columns (see rotator.tables)."""
    tables.plain_table(out, header, rows, keep=(0,))


def _styled(cell: str) -> str:
    from rich.markup import escape

    style = _STYLE.get(cell)
    return f"[{style}]{escape(cell)}[/]" if style else escape(cell)


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
