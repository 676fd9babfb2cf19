"""How a run ended, in the words the CLI and Lambda report: `Outcome` and its builders."""

from __future__ import annotations

from dataclasses import dataclass

from rotator.engine.runrecord import Run, RunState, TokenRef
from rotator.tables import format_time

__all__ = ["Outcome", "final_outcome", "outcome_for", "token_id"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one account's run ended, as the CLI and Lambda report it."""

    account: str
    # completed adopted not_due awaiting_revoke rolled_back needs_attention incomplete
    # interrupted not_started (a SIGINT/SIGTERM stopped the run or came before it)
    # in_progress (a scheduled pass left a run Secrets Manager drives to its steps)
    # aborted revoked (operator commands that did what was asked)
    result: str
    message: str
    run_id: str | None = None
    state: str | None = None
    old_token_id: str | None = None
    new_token_id: str | None = None
    revoked: bool = False
    revoke_not_before: str | None = None

    @property
    def exit_code(self) -> int:
        return {
            "rolled_back": 1,
            "incomplete": 3,
            "interrupted": 3,
            "not_started": 3,
            "needs_attention": 4,
            "error": 1,
        }.get(self.result, 0)


def final_outcome(run: Run, account: str) -> Outcome:
    """How a run that stopped in its current state is reported."""
    state = run.state
    if state is RunState.COMPLETED:
        if run.old_token is None:
            return outcome_for(
                run, account, "adopted", "first managed token created and stored; nothing revoked"
            )
        return outcome_for(
            run,
            account,
            "completed",
            f"rotated; old token {run.old_token.id} revoked",
            revoked=True,
        )
    if state is RunState.AWAITING_REVOKE:
        return outcome_for(
            run,
            account,
            "awaiting_revoke",
            f"new token live; old token revoked after {format_time(run.revoke_not_before)}",
        )
    if state is RunState.ROLLED_BACK:
        return outcome_for(
            run,
            account,
            "rolled_back",
            f"rolled back ({run.failure}); the old token is still valid",
        )
    if state is RunState.FAILED_NEEDS_ATTENTION:
        return outcome_for(
            run,
            account,
            "needs_attention",
            f"{run.failure or 'failed'}; still to do: " + "; ".join(run.remaining),
        )
    return outcome_for(run, account, "incomplete", f"stopped at {state.value}")


def outcome_for(
    run: Run, account: str, result: str, message: str, *, revoked: bool = False
) -> Outcome:
    return Outcome(
        account=account,
        result=result,
        message=message,
        run_id=run.run_id,
        state=run.state.value,
        old_token_id=token_id(run.old_token),
        new_token_id=token_id(run.new_token),
        revoked=revoked,
        revoke_not_before=run.revoke_not_before,
    )


def token_id(token: TokenRef | None) -> str | None:
    return token.id if token else None
