"""Scheduled runs: one pass over the due accounts, for an EventBridge schedule.

An event `{"source": "rotator.schedule"}` (or EventBridge's own, or `{"accounts": [...]}`)
rotates every due account in the config, or those listed in `accounts`, and finishes
pending revokes. It never advances a run Secrets Manager is driving: such a run is
reported as `in_progress`, except that the revoke it owes after the grace is finished.
One account's failure never stops the rest; the pass fails (RotationError) after them all.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from rotator.aws_lambda.errors import RotationError
from rotator.aws_lambda.events import EventError, ScheduledEvent
from rotator.engine.runrecord import AccountRecord
from rotator.engine.workflow import Engine, Outcome
from rotator.errors import ConfigError, RotatorError

__all__ = ["scheduled", "scheduled_names"]

log = structlog.get_logger("rotator.aws_lambda")


def scheduled_names(engine: Engine, event: ScheduledEvent) -> list[str]:
    """The configured usernames a scheduled event covers; EventError for an unknown one."""
    if event.accounts is None:
        return [a.username for a in engine.config.accounts]
    names = []
    for i, name in enumerate(event.accounts):
        try:
            names.append(engine.config.account(name).username)
        except ConfigError as exc:
            raise EventError(f"event.accounts[{i}]: {exc}") from None
    return list(dict.fromkeys(names))


def scheduled(
    engine: Engine, names: list[str], *, seen: dict[str, AccountRecord] | None = None
) -> dict[str, Any]:
    """Rotate every due account in `names`; one failure never stops the rest.

    First one cheap admin-only call, as every acting CLI command makes: a revoked or garbage
    admin token fails the invocation the day it breaks, not the day a token is next due.
    `seen` receives the record of each account found with nothing to do, as the pass read
    it (the EMF lines reuse it instead of reading it again).
    """
    if names:
        engine.client.active_accounts()
    idle = _idle(engine, names, seen if seen is not None else {})
    results = []
    for name in names:
        try:
            outcome = idle.get(name) or engine.rotate(name, trigger="schedule")
            results.append(
                {"account": outcome.account, "result": outcome.result, "message": outcome.message}
            )
        except RotatorError as exc:
            results.append({"account": name, "result": "error", "message": str(exc)})
        log.info("lambda.account_done", **results[-1])
    failed = [r for r in results if r["result"] in ("rolled_back", "needs_attention", "error")]
    summary = {"results": results, "failed": len(failed)}
    if failed:
        # Raising marks the invocation failed, so CloudWatch alarms and EventBridge retries see it.
        raise RotationError(f"{len(failed)} of {len(results)} account(s) failed: {failed}")
    return summary


IDLE_CONCURRENCY = 8
"""Accounts whose records are read at once to learn which have nothing to do."""


def _idle(
    engine: Engine, names: list[str], seen: dict[str, AccountRecord]
) -> dict[str, Outcome]:
    """The accounts with nothing to do (mostly `not_due`), from reads only, several at once.

    A pass reads each account's record before anything else; most are not due, so the
    pass would otherwise wait for one read per account in turn. A store that reads many
    records in one round trip (DynamoDB's BatchGetItem) does; the records it did not
    answer are read one by one, several at once. Accounts with work, or whose read
    failed, are left out: `rotate` then decides (and reports) as before.
    """
    known = _records_at_once(engine, names)

    def ask(name: str) -> tuple[Outcome, AccountRecord] | None:
        try:
            record = known[name] if name in known else engine.account_record(name)
            outcome = engine.idle(name, trigger="schedule", record=record)
        except Exception:  # `rotate` meets it again, contained and reported
            return None
        return None if outcome is None else (outcome, record)

    if len([name for name in names if name not in known]) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(IDLE_CONCURRENCY, len(names))) as pool:
            answers = list(pool.map(ask, names))
    else:
        answers = [ask(name) for name in names]
    idle = {}
    for name, answer in zip(names, answers, strict=True):
        if answer is not None:
            idle[name], seen[name] = answer
    return idle


def _records_at_once(engine: Engine, names: list[str]) -> dict[str, AccountRecord]:
    """The records a batch read of the store returns; {} if it has none or it fails."""
    load = getattr(getattr(engine, "store", None), "load_accounts", None)
    if load is None or len(names) < 2:
        return {}
    try:
        docs = load(names)
    except Exception as exc:  # each account is read alone, as without a batch read
        log.warning("lambda.batch_read_failed", error=str(exc))
        return {}
    records = {}
    for name, doc in docs.items():
        # One that does not parse is read alone: `rotate` then reports what is wrong.
        with contextlib.suppress(Exception):
            records[name] = AccountRecord.from_doc(doc, name)
    return records
