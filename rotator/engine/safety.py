"""What a person's command may still do to an unfinished run, decided in words (no I/O).

`abort` rolls a run back only while that cannot leave a backend on a revoked token (I1)
nor revoke a token consumers may already hold: once any revoke of the old token was sent,
or the new token is promoted and live, the answer is "finish it" and the command that
does. A config edit while a run is unfinished (a backend removed, renamed or added) stops
the run with the backend's name and the next step, instead of a crash.
"""

from __future__ import annotations

from collections.abc import Collection

from rotator.engine.runrecord import Run, RunState
from rotator.tables import format_time

__all__ = [
    "SETTLED",
    "abort_refusal",
    "added_backend_step",
    "config_problems",
    "left_config_step",
    "past_promote",
]

# Per-backend progress that needs nothing more from that backend.
SETTLED = frozenset({"rolled_back", "skipped"})
# Before these states nothing is staged yet that a backend added to the config would miss.
_STAGING = frozenset({RunState.PLANNED, RunState.CREATING, RunState.CREATED, RunState.STORING})


def past_promote(run: Run) -> bool:
    """Every backend of the run serves its new token: consumers may already use it."""
    return (
        run.new_token is not None
        and bool(run.backends)
        and all(p.state == "promoted" for p in run.backends.values())
        and run.state not in (RunState.ROLLING_BACK, RunState.ROLLED_BACK)
    )


def abort_refusal(run: Run, account: str, live: Collection[str]) -> str | None:
    """Why `rotator abort` must not roll this run back (None: it may), with what to run instead.

    `live` is MotherDuck's live token ids for the account, listed just now.
    """
    rid = run.run_id
    if run.revoke_sent_at or run.revoke_attempts or run.state is RunState.REVOKING:
        old = run.old_token.id if run.old_token else "?"
        return (
            f"run {rid} already sent the revoke of the old token {old}, so it cannot be rolled "
            f"back (the backends would return to a token that may be gone); finish it with "
            f"`rotator rotate {account}`"
        )
    if past_promote(run) and run.new_token is not None and run.new_token.id in live:
        grace_end = format_time(run.revoke_not_before, "")
        when = f" after the grace ({grace_end})" if grace_end else ""
        first = f"; it is held back by: {run.remaining[0]}" if run.remaining else ""
        return (
            f"run {rid} already promoted the new token {run.new_token.id}: consumers may hold "
            f"it, and an abort would revoke it; finish the rotation with `rotator rotate "
            f"{account}`{when}, or now with `rotator rotate {account} --revoke-now`{first}"
        )
    if run.old_token is not None and run.old_token.id not in live:
        return (
            f"the old token {run.old_token.id} of run {rid} is no longer live in MotherDuck: "
            f"rolling back would put the backends on a dead token; finish the run with "
            f"`rotator rotate {account}` instead"
        )
    return None


def left_config_step(run: Run, label: str) -> str:
    return (
        f"backend {label} took part in run {run.run_id} but is no longer in the config: put "
        f"it back, or run `rotator abort {run.run_id} --skip-backend {label}` if nothing "
        "reads it any more"
    )


def added_backend_step(run: Run, account: str, label: str) -> str:
    new = run.new_token.id if run.new_token else "?"
    return (
        f"backend {label} was added to the config after run {run.run_id} stored its token and "
        f"does not hold the new token {new}: remove it from the config until `rotator rotate "
        f"{account}` has finished this run, then `rotator rotate {account} --force` stores a "
        "token in it"
    )


def config_problems(run: Run, account: str, configured: Collection[str]) -> list[str]:
    """A resumed run's backends against today's config: one next step per mismatch.

    Past promote a backend that left the config holds the new token already (revoking the
    old one cannot hurt it), and a backend that joined is checked before the revoke.
    Before promote, a missing backend holds the new token staged and would be skipped by
    promote; an added one would be missing from promote once storing is over.
    """
    if past_promote(run) or run.state not in _STAGING | {
        RunState.STORED,
        RunState.VERIFYING,
        RunState.VERIFIED,
        RunState.PROMOTING,
    }:
        return []
    problems = [
        left_config_step(run, label)
        for label, progress in run.backends.items()
        if label not in configured and progress.state not in SETTLED
    ]
    if run.state not in _STAGING:
        problems += [
            f"backend {label} was added to the config after run {run.run_id} stored its "
            f"token: remove it until this run has finished (`rotator rotate {account}`), or "
            f"roll the run back with `rotator abort {run.run_id}`; the next rotation includes it"
            for label in configured
            if label not in run.backends
        ]
    return problems
