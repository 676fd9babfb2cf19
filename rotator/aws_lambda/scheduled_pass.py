"""Scheduled runs: one pass over the due accounts, for an EventBridge schedule.

An event `{"source": "rotator.schedule"}` (or EventBridge's own, or `{"accounts": [...]}`)
rotates every due account in the config, or those listed in `accounts`, and finishes
pending revokes. It never advances a run Secrets Manager is driving: such a run is
reported as `in_progress`, except that the revoke it owes after the grace is finished.
One account's failure never stops the rest; the pass fails (RotationError) after them all.
"""

from __future__ import annotations

from typing import Any

import structlog

from rotator.aws_lambda.errors import RotationError
from rotator.aws_lambda.events import EventError, ScheduledEvent
from rotator.engine.workflow import Engine
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


def scheduled(engine: Engine, names: list[str]) -> dict[str, Any]:
    """Rotate every due account in `names`; one failure never stops the rest.

    First one cheap admin-only call, as every acting CLI command makes: a revoked or garbage
    admin token fails the invocation the day it breaks, not the day a token is next due.
    """
    if names:
        engine.client.active_accounts()
    results = []
    for name in names:
        try:
            outcome = engine.rotate(name, trigger="schedule")
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
