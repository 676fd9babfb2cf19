"""The rotation steps and the loop that drives them, for one account under one lease.

create -> store -> verify -> promote -> (grace) -> revoke, each a method that reads what
it needs, acts once, records the outcome and names the next state. Rollback restores the
backends first and revokes the new token only when every backend is back on the old one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from backends import TokenRecord
from rotator import interrupt
from rotator.checks import CheckContext, run_check, run_with_attempts
from rotator.errors import (
    BackendError,
    CheckFailed,
    ConfigError,
    MotherDuckError,
    NeedsAttention,
    OutcomeUnknown,
)
from rotator.outcome import Outcome, final_outcome, outcome_for
from rotator.outcome import token_id as _id
from rotator.runcontext import RunContext, StepFailed
from rotator.runrecord import (
    BackendProgress,
    Run,
    RunState,
    TokenRef,
    new_run_id,
    rotation_due,
    token_name_for,
)
from rotator.safety import (
    SETTLED,
    abort_refusal,
    added_backend_step,
    config_problems,
    left_config_step,
    past_promote,
)
from rotator.secret import Secret

if TYPE_CHECKING:
    from rotator.motherduck import TokenInfo

__all__ = ["Runner", "left_to_secretsmanager"]

log = structlog.get_logger("rotator.workflow")

# Steps whose first write is their own intent, made before their first side effect: the
# transition into one is carried by that write instead of a checkpoint of its own (four
# fewer per rotation). A resume from the previous state redoes nothing that happened.
INTENT_FIRST = frozenset(
    {RunState.CREATING, RunState.STORING, RunState.PROMOTING, RunState.REVOKING}
)
MAX_CREATE_ATTEMPTS = 3
MAX_REVOKE_ATTEMPTS = 5
SETTLE_FIRST_PAUSE = 0.1  # seconds between listings while a create may still commit
SETTLE_MAX_PAUSE = 2.0
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


class Runner(RunContext):
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
            run = self._start(run_id or new_run_id(), trigger, reason)
        elif (left := left_to_secretsmanager(run, trigger)) is not None:
            return left
        else:
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
        """Roll back an unfinished run if that is still safe (rotator.safety decides).

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
        self.record.current_token = _ref(token)
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
            self._transition(run, nxt, save=nxt not in INTENT_FIRST or nxt is self.until)
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

    # -- steps -------------------------------------------------------------------------

    def _create(self, run: Run) -> RunState:
        if run.create_attempts:
            # An earlier process sent a create and died: it may have minted one, or the
            # server may still be working on it.
            self._forget_lost_replacements(run, settle=True)
        while True:
            run.create_attempts += 1
            run.create_sent_at = time.time()
            self._save(run)
            self._fence("motherduck.create")
            try:
                created = self.e.client.create_token(
                    self.name,
                    run.token_name,
                    ttl_seconds=int(self.policy.ttl.total_seconds()) if self.policy.ttl else None,
                    token_type=self.policy.token_type,
                )
                break
            except OutcomeUnknown as exc:
                log.warning(
                    "token.create_outcome_unknown",
                    token_name=run.token_name,
                    in_flight=exc.in_flight,
                )
                if not exc.in_flight:
                    run.create_sent_at = None  # the server answered: nothing left to land
                self._forget_lost_replacements(run, settle=exc.in_flight)
                if run.create_attempts >= MAX_CREATE_ATTEMPTS:
                    raise StepFailed(
                        f"creating the replacement failed {run.create_attempts} times "
                        "with no answer"
                    ) from None
            except MotherDuckError as exc:
                if exc.status is None:
                    raise
                run.create_sent_at = None
                raise StepFailed(f"MotherDuck refused to create the replacement: {exc}") from exc
        self._fence_created(created.info)
        run.create_sent_at = None  # answered: no create of this run is in flight any more
        self.secret = created.token
        run.new_token = _ref(created.info, fingerprint=created.token.fingerprint(self.key))
        log.info("token.created", token_id=created.info.id, token_name=run.token_name)
        return RunState.CREATED

    def _forget_lost_replacements(self, run: Run, *, settle: bool = False) -> None:
        """Revoke tokens of this run whose secret we no longer have (I2): found by name.

        With `settle`, a create may still be in flight on the server (no answer came back,
        or the process that sent it died): one empty listing proves nothing, and a token
        committed after the run moved on would outlive it. So keep listing until the token
        shows up or `[motherduck] create_settle` has passed since the create was sent.
        """
        found = self._wait_for_late_create(run) if settle else None
        if found:
            run.create_sent_at = None  # the create in flight has landed: nothing left to wait for
        else:
            found = self.e.client.find_tokens_by_name(self.name, run.token_name)
        for token in found:
            self._fence("motherduck.revoke")
            self.e.client.revoke_token(self.name, token.id)
            run.lost_token_ids.append(token.id)
            log.warning("token.lost_revoked", token_id=token.id, token_name=run.token_name)
        self._save(run)

    def _wait_for_late_create(self, run: Run) -> list[TokenInfo] | None:
        """Poll by name until a token appears or the settle window closes; None if closed."""
        if run.create_sent_at is None:
            return None
        settle = self.e.config.motherduck.create_settle.total_seconds()
        deadline = time.monotonic() + (run.create_sent_at + settle - time.time())
        pause = SETTLE_FIRST_PAUSE
        announced = False
        while (left := deadline - time.monotonic()) > 0:
            found = self.e.client.find_tokens_by_name(self.name, run.token_name)
            if found:
                return found
            if not announced:
                log.info("token.create_settling", token_name=run.token_name, seconds=round(left))
                announced = True
            self._keep_lease()
            time.sleep(min(pause, max(left, 0.0)))
            pause = min(pause * 2, SETTLE_MAX_PAUSE)
        return None

    def _store(self, run: Run) -> RunState | None:
        secret = self._new_secret(run)
        if secret is None:
            return RunState.CREATING
        assert run.new_token is not None
        record = TokenRecord(
            secret,
            run.new_token.id,
            run.token_name,
            run.new_token.created_ts,
            run.new_token.expire_at,
        )
        labels = [self.stage_only] if self.stage_only else list(self.backends)
        for label in labels:
            backend = self.backends[label]
            progress = run.backends.get(label)
            if progress and progress.state == "staged":
                continue
            run.backends[label] = BackendProgress("staging")
            self._save(run)
            self._fence(f"stage:{_kind(label)}")
            try:
                receipt = backend.stage(record, run_id=run.run_id)
            except BackendError as exc:
                run.backends[label].error = str(exc)
                raise StepFailed(f"storing in {label} failed: {exc}") from exc
            run.backends[label] = BackendProgress("staged", dict(receipt))
            self._save(run)
            log.info("backend.staged", backend=label, token_id=run.new_token.id)
        staged = all(p.state == "staged" for p in run.backends.values())
        if self.stage_only or len(run.backends) < len(self.backends) or not staged:
            # stage_only (createSecret) stages one backend and stops there, even when it is
            # the only one: reaching `stored` is the next invocation's (setSecret's) work.
            return None
        return RunState.STORED

    def _new_secret(self, run: Run) -> Secret | None:
        """The new token's secret: from memory, else read back from a backend; None if lost.

        When no backend has it, the token is useless: revoke it (nobody can hold it) and
        let the run mint another — the only case where a run makes a second token (I3).
        """
        if self.secret is not None:
            return self.secret
        assert run.new_token is not None
        for label, backend in self.backends.items():
            try:
                # The current value too: revoking a token some backend serves would break I1.
                candidates = (backend.read_staged(run.run_id), backend.read_current())
            except BackendError as exc:
                raise StepFailed(f"cannot read {label} to resume: {exc}") from exc
            for stored in candidates:
                if stored is not None and self._matches(stored, run.new_token):
                    self.secret = stored.token
                    return self.secret
        log.warning("token.secret_lost", token_id=run.new_token.id)
        self._fence("motherduck.revoke")
        self.e.client.revoke_token(self.name, run.new_token.id)
        run.lost_token_ids.append(run.new_token.id)
        run.new_token = None
        run.backends = {}
        run.create_attempts = 0
        return None

    def _verify(self, run: Run) -> RunState:
        assert run.new_token is not None
        checks = self.checks
        for label, backend in self.backends.items():
            try:
                stored = backend.read_staged(run.run_id)
            except BackendError as exc:
                raise StepFailed(f"readback of {label} failed: {exc}") from exc
            if stored is None or not self._matches(stored, run.new_token):
                raise StepFailed(
                    f"readback of {label} failed: it does not hold the new token {run.new_token.id}"
                )
            ctx = CheckContext(self.name, label, stored.token, stored.token_id or run.new_token.id)
            for check, attempts, interval in checks:
                try:
                    run_with_attempts(
                        check, ctx, attempts=attempts, interval=interval, sleep=self._wait
                    )
                except CheckFailed as exc:
                    raise StepFailed(str(exc)) from exc
            log.info("backend.verified", backend=label, checks=[c.name for c, _, _ in checks])
        return RunState.VERIFIED

    def _promote(self, run: Run) -> RunState:
        assert run.new_token is not None
        for label, backend in self.backends.items():
            progress = run.backends[label]
            if progress.state == "promoted":
                continue
            progress.state = "promoting"
            self._save(run)
            self._fence(f"promote:{_kind(label)}")
            try:
                backend.promote(progress.receipt or {}, run_id=run.run_id)
            except BackendError as exc:
                progress.error = str(exc)
                raise StepFailed(f"promoting in {label} failed: {exc}") from exc
            progress.state = "promoted"
            self._save(run)
            log.info("backend.promoted", backend=label, token_id=run.new_token.id)
        self.record.current_token = run.new_token
        self._save(run, account=True)
        return RunState.PROMOTED

    def _after_store(self, run: Run) -> RunState:
        self._hook("after_store", run)
        return RunState.VERIFYING

    def _after_promote(self, run: Run) -> RunState:
        self._hook("after_promote", run)
        if run.old_token is None:
            # A first managed token revokes nothing it did not make: only this run's name.
            self._revoke_strays(run, self.e.client.list_tokens(self.name), prefix=run.token_name)
            return RunState.COMPLETED
        run.revoke_not_before = (self.e.clock() + self.policy.revoke_grace).isoformat()
        return RunState.AWAITING_REVOKE

    def _await_revoke(self, run: Run, revoke_now: bool) -> RunState | None:
        due = (
            run.revoke_not_before is None
            or datetime.fromisoformat(run.revoke_not_before) <= self.e.clock()
        )
        return RunState.REVOKING if due or revoke_now else None

    def _revoke(self, run: Run) -> RunState:
        assert run.old_token is not None and run.new_token is not None
        # Fence, then re-read MotherDuck and every backend, then revoke: as late as each can
        # be, and before the intent is saved (a blocked revoke was never sent). Only reads
        # follow this fence: the barrier that makes the run durable is the one after the
        # intent below (the store checks the lease again there).
        self._fence("motherduck.revoke_old", barrier=False)
        blocked = self._revoke_blocked(run)
        if blocked is not None:
            return blocked
        run.revoke_attempts += 1
        run.revoke_sent_at = run.revoke_sent_at or self.e.clock().isoformat()
        self._save(run)  # fenced by the store: a run that lost its lease stops here
        self.lease = self.e.store.save(self.lease)  # a barrier: the intent durable (journal)
        try:
            self.e.client.revoke_token(self.name, run.old_token.id)
            listed = self.e.client.list_tokens(self.name)
            live = {t.id for t in listed}
            if run.old_token.id in live:
                raise _RevokeUnconfirmed(run.old_token.id)
        except MotherDuckError as exc:
            # Bounded across runs: a revoke that never takes ends in needs-attention with
            # the next safe action, instead of "incomplete" forever.
            if run.revoke_attempts < MAX_REVOKE_ATTEMPTS:
                raise
            run.failure = f"revoking {run.old_token.id} failed {run.revoke_attempts} times: {exc}"
            run.remaining = [
                f"revoke token {run.old_token.id} of {self.name} in MotherDuck "
                "and confirm it is gone (the backends already serve the new token): "
                f"`rotator rotate {self.name}` tries again"
            ]
            return RunState.FAILED_NEEDS_ATTENTION
        if run.new_token.id not in live:
            return self._attention(
                run,
                f"the new token {run.new_token.id} left MotherDuck's live list while the old "
                f"token {run.old_token.id} was being revoked: no backend holds a live token",
                [f"put a live token of {self.name} in every backend by hand (both are gone)"],
            )
        log.info("token.revoked", token_id=run.old_token.id)
        self._revoke_strays(run, listed)
        if self.policy.confirm_revoked:
            self._confirm_old_token_rejected(run)
        self._hook("after_revoke", run)
        return RunState.COMPLETED

    def _revoke_blocked(self, run: Run) -> RunState | None:
        """Before the old token goes: the new one must be live and every backend on it (I1).

        Reads only. A MotherDuck or backend read that fails propagates (the run stays
        resumable); a finding stops the run as needs-attention with the next command.
        """
        assert run.old_token is not None and run.new_token is not None
        old, new = run.old_token.id, run.new_token.id
        live = {t.id for t in self.e.client.list_tokens(self.name)}
        if new not in live:
            back = (
                f"run `rotator abort {run.run_id}` to put every backend back on the old "
                f"token {old}, which is still live"
                if old in live
                else f"the old token {old} is gone too: store a live token in every backend"
            )
            return self._attention(
                run,
                f"the new token {new} is no longer live in MotherDuck (revoked or expired "
                f"outside run {run.run_id}), so the old token {old} was not revoked; the "
                "backends serve the dead token",
                [back, f"then start a fresh rotation with `rotator rotate {self.name} --force`"],
            )
        problems = []
        for label, backend in self.backends.items():
            current = backend.read_current()
            if current is not None and self._matches(current, run.new_token):
                continue
            if label not in run.backends:
                problems.append(added_backend_step(run, self.name, label))
            else:
                problems.append(
                    f"{label} no longer serves the new token {new} (changed outside rotator "
                    f"after promote): `rotator drift {self.name}` shows what it serves; put "
                    f"token {new} back in it, then `rotator rotate {self.name}`"
                )
        if problems:
            return self._attention(
                run, f"not revoking the old token {old}: {problems[0]}", problems
            )
        return None

    def _attention(self, run: Run, failure: str, remaining: list[str]) -> RunState:
        run.failure, run.remaining = failure, remaining
        log.warning("run.needs_attention", reason=failure)
        return RunState.FAILED_NEEDS_ATTENTION

    def _revoke_strays(
        self, run: Run, listed: list[TokenInfo], *, prefix: str | None = None
    ) -> None:
        """Revoke live rotator-made tokens that nothing uses, before the run completes (I2).

        A create whose answer was lost (timeout) can still commit on the server after the
        run listed by name and minted again; a run that stalled past its lease can mint
        after its successor took over (the one effect MotherDuck cannot fence). Both show
        up here, named `rotator-<account>-...`: every such token that is not the new one,
        not the record's current one and not served by any backend (re-read now) is revoked.
        `prefix` narrows the sweep (a first managed token: this run's own name only).
        """
        assert run.new_token is not None
        keep = {run.new_token.id, _id(self.record.current_token), _id(run.old_token)}
        if run.state is RunState.REVOKING:
            keep.discard(_id(run.old_token))  # revoked just now
        prefix = prefix or token_name_for(self.name, "")
        candidates = [
            t for t in listed if (t.name or "").startswith(prefix) and t.id not in keep
        ]
        if candidates:
            keep |= self._served_token_ids()
        strays = [t for t in candidates if t.id not in keep]
        for token in strays:
            self._fence("motherduck.revoke")
            self.e.client.revoke_token(self.name, token.id)
            run.lost_token_ids.append(token.id)
            log.warning("token.stray_revoked", token_id=token.id, token_name=run.token_name)
        if strays:
            self._save(run)

    def _confirm_old_token_rejected(self, run: Run) -> None:
        """confirm_revoked: the old token must now fail every check (beyond the listing).

        Its value is known only to the process that started the run; a revoke that
        happens in a later run (after a grace period) is confirmed by the listing alone.
        """
        assert run.old_token is not None
        if self.old_secret is None:
            log.info("token.revoke_check_skipped", token_id=run.old_token.id)
            return
        ctx = CheckContext(self.name, "old token", self.old_secret, run.old_token.id)
        for check, _, _ in self.checks:
            if check.name == "readback":
                continue
            try:
                run_check(check, ctx)
            except CheckFailed:
                continue
            raise _RevokeUnconfirmed(run.old_token.id, f"still passes the {check.name} check")
        log.info("token.revoke_confirmed", token_id=run.old_token.id)

    # -- rollback ----------------------------------------------------------------------

    def _rollback(self, run: Run) -> RunState:
        remaining: list[str] = []
        for label, progress in run.backends.items():
            if progress.state in SETTLED:
                continue
            backend = self.backends.get(label)
            if backend is None:
                remaining.append(left_config_step(run, label))
                continue
            progress.state = "rolling_back"
            self._save(run)
            self._fence(f"rollback:{_kind(label)}")
            try:
                backend.rollback(progress.receipt, run_id=run.run_id)
            except BackendError as exc:
                progress.error = str(exc)
                remaining.append(f"restore {label} to the old token ({exc})")
                continue
            progress.state = "rolled_back"
            run.undone.append(f"restored {label}")
            self._save(run)
        if remaining:
            run.failure = run.failure or "the rollback could not finish"
            run.remaining = [
                *remaining,
                f"then revoke the new token {_id(run.new_token)} "
                "(left valid: a backend may still serve it)",
            ]
            return RunState.FAILED_NEEDS_ATTENTION
        try:
            if run.new_token is not None:
                self._fence("motherduck.revoke")
                self.e.client.revoke_token(self.name, run.new_token.id)
                run.undone.append(f"revoked new token {run.new_token.id}")
            if run.create_attempts:
                self._forget_lost_replacements(run, settle=True)
        except MotherDuckError as exc:
            run.remaining = [f"revoke the new token {_id(run.new_token)} of {self.name} ({exc})"]
            return RunState.FAILED_NEEDS_ATTENTION
        if (
            self.record.current_token
            and run.new_token
            and self.record.current_token.id == run.new_token.id
        ):
            self.record.current_token = run.old_token
            self._save(run, account=True)
        run.remaining = []
        return RunState.ROLLED_BACK


class _RevokeUnconfirmed(MotherDuckError):
    def __init__(self, token_id: str, why: str = "still listed") -> None:
        super().__init__(f"token {token_id} {why} after revoke")


def _kind(label: str) -> str:
    """A backend label's type (`vault:secret/x` -> `vault`): the name of its stall points."""
    return label.split(":", 1)[0]


def _ref(info: TokenInfo, *, fingerprint: str | None = None) -> TokenRef:
    return TokenRef(
        id=info.id,
        name=info.name,
        created_ts=info.created_ts.isoformat() if info.created_ts else None,
        expire_at=info.expire_at.isoformat() if info.expire_at else None,
        fingerprint=fingerprint,
    )
