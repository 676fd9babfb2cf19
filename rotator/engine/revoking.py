"""After promote: the grace period, then the revoke of the old token and the run's end.

One job: retire the old token once nothing needs it. It carries I1 (the old token goes
only when the new one is live in MotherDuck and every backend serves it, re-read right
before the revoke), I2 (the strays are swept before the run completes), I4 (fenced, and
the revoke's intent is durable before it is sent) and I6 (a revoke that cannot be done
safely stops as needs-attention with the next command). The `rotator revoke` command,
which revokes one token by hand, is revoke.py.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from rotator.engine.runrecord import Run, RunState
from rotator.engine.safety import added_backend_step
from rotator.engine.sweep import Sweeps
from rotator.errors import CheckFailed, MotherDuckError
from rotator.verify.checks import CheckContext, run_check

__all__ = ["MAX_REVOKE_ATTEMPTS", "RevokeSteps"]

log = structlog.get_logger("rotator.workflow")

MAX_REVOKE_ATTEMPTS = 5


class RevokeSteps(Sweeps):
    """promoted -> awaiting_revoke -> revoking -> completed."""

    def _after_promote(self, run: Run) -> RunState:
        self._hook("after_promote", run)
        if run.old_token is None:
            # A first managed token revokes nothing it did not make: only this run's name.
            self._flush(run)  # `promoted` on file before the listing and any revoke
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


class _RevokeUnconfirmed(MotherDuckError):
    def __init__(self, token_id: str, why: str = "still listed") -> None:
        super().__init__(f"token {token_id} {why} after revoke")
