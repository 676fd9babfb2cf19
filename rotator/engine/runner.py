"""The loop that drives a run, and the commands that start or end one (rotate, abort, adopt).

One job: for one account under one lease, pick up the active run (or start one when it is
due) and drive it from state to state until it is done, stopped or must wait. The steps
themselves are elsewhere, each a method that reads what it needs, acts once, records the
outcome and names the next state: create -> store -> verify -> promote in forward.py,
(grace) -> revoke in revoking.py, rollback in rollback.py, the by-name sweeps they share
in sweep.py, the bookkeeping under all of them in runcontext.py. `Runner` joins them.

It carries I3 (a resumed run carries on from its checkpointed state, every step safe to
repeat), I6 (a failed step rolls back, and the outcome says what happened and what is
left), I4 (an interrupted run checks it still holds the lease before it reports) and I1
for the commands: `abort` refuses once rolling back could leave a backend on a dead
token, `adopt` refuses a token while the backends serve another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from rotator.engine import interrupt
from rotator.engine.forward import ForwardSteps, token_ref
from rotator.engine.outcome import Outcome, final_outcome, outcome_for
from rotator.engine.outcome import token_id as _id
from rotator.engine.revoking import RevokeSteps
from rotator.engine.rollback import RollbackStep
from rotator.engine.runcontext import StepFailed
from rotator.engine.runrecord import (
    Run,
    RunState,
    new_run_id,
    rotation_due,
)
from rotator.engine.safety import (
    SETTLED,
    abort_refusal,
    config_problems,
    left_config_step,
    past_promote,
)
from rotator.errors import (
    BackendError,
    ConfigError,
    MotherDuckError,
    NeedsAttention,
)

__all__ = ["Runner", "left_to_secretsmanager"]

log = structlog.get_logger("rotator.workflow")

# Steps whose first write is their own intent, made before their first side effect: the
# transition into one is carried by that write instead of a checkpoint of its own (four
# fewer per rotation). A resume from the previous state redoes nothing that happened.
INTENT_FIRST = frozenset(
    {RunState.CREATING, RunState.STORING, RunState.PROMOTING, RunState.REVOKING}
)
# States whose step sends nothing before the next checkpoint write: `created` and
# `verified` only name the next state (an intent-first one); `stored` and `promoted` run
# a hook (flushed first, RunContext._hook) and then name the next state, which is saved,
# or (a first managed token) sweep strays after a flush. The transition into one is
# carried by that next write, as for INTENT_FIRST: a crash before it resumes from the
# state before, whose step is safe to repeat and whose effects are all recorded.
CARRIED = frozenset({RunState.CREATED, RunState.STORED, RunState.VERIFIED, RunState.PROMOTED})
FORWARD = list(RunState)[: list(RunState).index(RunState.COMPLETED) + 1]
# What a scheduled pass may still do to a run Secrets Manager drives: the revoke owed after
# the grace, and cleanup of a failure. Everything before belongs to the four rotation steps.
SCHEDULE_MAY_FINISH = frozenset(
    {
        RunState.AWAITING_REVOKE,
        RunState.REVOKING,
        RunState.ROLLING_BACK,
        RunState.FAILED_NEEDS_ATTENTION,
    }
)


def left_to_secretsmanager(run: Run, trigger: str) -> Outcome | None:
    """A scheduled pass leaves a run Secrets Manager drives to its steps; None otherwise."""
    if trigger != "schedule" or run.trigger != "secretsmanager" or run.terminal:
        return None
    if run.state in SCHEDULE_MAY_FINISH:
        return None
    return outcome_for(
        run,
        run.account,
        "in_progress",
        f"run {run.run_id} is driven by Secrets Manager (at {run.state.value}); left to its steps",
    )


class Runner(ForwardSteps, RevokeSteps, RollbackStep):
    """Runs, resumes, aborts or adopts for one account. Build one per lease."""

    # -- top level ---------------------------------------------------------------------

    def rotate(self, *, force: bool, revoke_now: bool, run_id: str | None, trigger: str) -> Outcome:
        run = self._active_run()
        if run is None:
            due, reason = rotation_due(
                self.record.current_token,
                now=self.e.clock(),
                rotate_after=self.policy.rotate_after,
                rotate_before_expiry=self.policy.rotate_before_expiry,
                force=force,
                window=self.policy.window,
                spread=self.policy.spread,
                account=self.name,
            )
            if not due:
                return Outcome(
                    self.name, "not_due", reason, old_token_id=_id(self.record.current_token)
                )
            if interrupt.stop_requested():  # SIGINT/SIGTERM: start nothing new
                return interrupt.not_started(self.name)
            self._preflight()
            # The caller's pending check (the CLI's admin-token probe, answered while the
            # preflight read) settles before the run's first write; a stop asked for while
            # it was pending still finds nothing written.
            self._gate()
            if interrupt.stop_requested():
                return interrupt.not_started(self.name)
            run = self._start(run_id or new_run_id(), trigger, reason)
        elif (left := left_to_secretsmanager(run, trigger)) is not None:
            return left
        else:
            self._gate()  # before a resumed run reads or waits for anything
            log.info(
                "run.resumed",
                run_id=run.run_id,
                state=run.state.value,
                detail=f"resuming run {run.run_id} from {run.state.value}",
            )
            self._check_backend_config(run)
            if run.state is RunState.FAILED_NEEDS_ATTENTION:
                self._retry_attention(run)
        with structlog.contextvars.bound_contextvars(run_id=run.run_id):
            return self._drive(run, revoke_now=revoke_now)

    def _retry_attention(self, run: Run) -> None:
        """Retry what a needs-attention run left: the old token's revoke, or the rollback.

        A run that got past promote never rolls back here: its old token may already be
        revoked, so going back to it could leave a backend on a dead token (I1). It goes
        back to waiting for its revoke (the grace it recorded still holds), and the revoke
        step checks again what stopped it.
        """
        if past_promote(run):
            detail = f"retrying the revoke of the old token (stopped: {run.failure})"
            run.failure, run.remaining = None, []
            if run.revoke_attempts and run.old_token is not None:
                run.revoke_attempts = 0
                self._transition(run, RunState.REVOKING, detail)
            else:
                self._transition(run, RunState.AWAITING_REVOKE, detail)
        else:
            self._transition(run, RunState.ROLLING_BACK, "retrying the unfinished rollback")

    def _check_backend_config(self, run: Run) -> None:
        """Stop a resumed run whose backends no longer match the config, naming each one.

        Recorded in the run (status and history show it) without changing its state, so
        putting the config right is enough for the next `rotate` to carry on.
        """
        problems = config_problems(run, self.name, list(self.backends))
        if not problems:
            if run.remaining and run.state is not RunState.FAILED_NEEDS_ATTENTION:
                run.failure, run.remaining = None, []
                self._save(run)
            return
        run.failure = f"the config changed while run {run.run_id} was {run.state.value}"
        run.remaining = problems
        run.events.append(
            {"at": self.e.clock().isoformat(), "state": run.state.value, "detail": run.failure}
        )
        self._save(run)
        raise NeedsAttention(f"{run.failure}: {problems[0]}", remaining=problems)

    def abort(self, run_id: str, *, skip_backends: Sequence[str] = ()) -> Outcome:
        """Roll back an unfinished run if that is still safe (rotator.engine.safety decides).

        Refuses (ConfigError, nothing touched) once a revoke of the old token was sent,
        when the new token is promoted and live, when the old token is gone, and when a
        backend of the run left the config and is not named in `skip_backends`.
        """
        run = self._active_run()
        if run is None or run.run_id != run_id:
            raise ConfigError(
                f"run {run_id} is not the active run of {self.name!r}; nothing to abort"
            )
        unknown = [label for label in skip_backends if label not in run.backends]
        if unknown:
            raise ConfigError(
                f"--skip-backend {unknown[0]}: run {run_id} has no such backend "
                f"(its backends: {', '.join(run.backends) or 'none'})"
            )
        live = {t.id for t in self.e.client.list_tokens(self.name)}
        refusal = abort_refusal(run, self.name, live)
        if refusal is not None:
            raise ConfigError(refusal)
        left = [
            label
            for label, progress in run.backends.items()
            if label not in self.backends and progress.state not in SETTLED
            and label not in skip_backends
        ]
        if left:
            raise ConfigError(left_config_step(run, left[0]))
        for label in skip_backends:
            run.backends[label].state = "skipped"
            run.undone.append(f"skipped {label} (by `rotator abort --skip-backend`)")
        if run.state is not RunState.FAILED_NEEDS_ATTENTION:
            run.failure = "aborted by `rotator abort`"
        self._transition(run, RunState.ROLLING_BACK, "aborted by a person")
        outcome = self._drive(run, revoke_now=False)
        if outcome.result != "rolled_back":
            return outcome
        old = f"back on the old token {_id(run.old_token)}" if run.old_token else "restored"
        new = f"; new token {run.new_token.id} revoked" if run.new_token else ""
        return outcome_for(run, self.name, "aborted", f"aborted: backends {old}{new}")

    def adopt(self, token_id: str, *, force: bool = False) -> Outcome:
        """Record a live token of the account as its current one, if the backends serve it.

        A backend that serves another (known) token id means adopting this one would make
        the next rotation revoke a token nothing serves while the served one lives on;
        refused unless `force`, which says so loudly in the log and the outcome.
        """
        if self._active_run() is not None:
            raise ConfigError(
                f"{self.name!r} has an unfinished run; finish or abort it before adopting"
            )
        token = next((t for t in self.e.client.list_tokens(self.name) if t.id == token_id), None)
        if token is None:
            raise ConfigError(
                f"token id {token_id} is not a live token of {self.name!r} "
                f"(see `rotator tokens {self.name}`)"
            )
        others = {
            label: stored.token_id
            for label, stored in ((b.label, b.read_current()) for b in self.backends.values())
            if stored is not None and stored.token_id and stored.token_id != token_id
        }
        message = f"recorded {token_id} as the current token; the next rotation revokes it"
        if others:
            where = ", ".join(f"{label} serves {tid}" for label, tid in sorted(others.items()))
            if not force:
                raise ConfigError(
                    f"token id {token_id} is not what the backends serve ({where}); "
                    f"adopt the served token instead, or pass --force to adopt {token_id} anyway"
                )
            log.warning("token.adopted_forced", token_id=token_id, backends=sorted(others))
            message += f" (FORCED: {where}; those tokens are not tracked)"
        self.record.current_token = token_ref(token)
        self._save(account=True)
        log.info("token.adopted", token_id=token_id)
        return Outcome(self.name, "adopted", message, old_token_id=token_id)

    # -- the loop ----------------------------------------------------------------------

    def _drive(self, run: Run, *, revoke_now: bool) -> Outcome:
        steps: dict[RunState, Callable[[Run], RunState | None]] = {
            RunState.PLANNED: lambda r: RunState.CREATING,
            RunState.CREATING: self._create,
            RunState.CREATED: lambda r: RunState.STORING,
            RunState.STORING: self._store,
            RunState.STORED: self._after_store,
            RunState.VERIFYING: self._verify,
            RunState.VERIFIED: lambda r: RunState.PROMOTING,
            RunState.PROMOTING: self._promote,
            RunState.PROMOTED: self._after_promote,
            RunState.AWAITING_REVOKE: lambda r: self._await_revoke(r, revoke_now),
            RunState.REVOKING: self._revoke,
            RunState.ROLLING_BACK: self._rollback,
        }
        if self._reached_until(run):
            self._flush(run)
            return final_outcome(run, self.name)  # a retried step: its work is done already
        while run.state in steps:
            if interrupt.stop_requested():  # SIGINT/SIGTERM: stop at this step boundary
                self._flush(run)
                # Still ours? A run taken over meanwhile (a stall, then `abort` or another
                # rotate) must say LeaseLost, not "resumes from <its stale state>".
                self.lease = self.e.store.save(self.lease)
                return interrupt.interrupted(run, self.name)
            try:
                nxt = steps[run.state](run)
            except StepFailed as exc:
                run.failure = str(exc)
                log.warning("run.failed", state=run.state.value, reason=str(exc))
                nxt = RunState.ROLLING_BACK
            except (MotherDuckError, BackendError) as exc:
                # A backend that cannot be read before the revoke (the I1 guard) leaves the
                # run resumable, like an unreachable MotherDuck: incomplete, not rolled back.
                self._flush(run)
                return outcome_for(
                    run,
                    self.name,
                    "incomplete",
                    f"stopped at {run.state.value}: {exc}; the next `rotator rotate` resumes",
                )
            if nxt is None:
                break
            carried = nxt in INTENT_FIRST or nxt in CARRIED
            self._transition(run, nxt, save=not carried or nxt is self.until)
            if run.state is self.until:
                break
        self._flush(run)
        if run.state in (RunState.ROLLED_BACK, RunState.FAILED_NEEDS_ATTENTION):
            self._hook("on_failure", run)
        return final_outcome(run, self.name)

    def _reached_until(self, run: Run) -> bool:
        """True when the run is already at or past `until` on the forward path."""
        if self.until is None or run.state not in FORWARD:
            return False
        return FORWARD.index(run.state) >= FORWARD.index(self.until)
