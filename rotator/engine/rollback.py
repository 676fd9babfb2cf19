"""Rollback: every backend back on the old token first, then the new token revoked.

One job: undo a run that failed before promote (or was aborted). It carries I6 (failure
is safe and loud: what could not be undone is recorded as the next step for a person),
I1 (the new token is revoked only once no backend can still serve it), I2 (the new
token, and any a lost create left, are revoked) and I4 (every effect is fenced).
"""

from __future__ import annotations

from rotator.engine.forward import backend_kind
from rotator.engine.outcome import token_id as _id
from rotator.engine.runrecord import Run, RunState
from rotator.engine.safety import SETTLED, left_config_step
from rotator.engine.sweep import Sweeps
from rotator.errors import BackendError, MotherDuckError

__all__ = ["RollbackStep"]


class RollbackStep(Sweeps):
    """rolling_back -> rolled_back, or failed_needs_attention naming what is left."""

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
            self._fence(f"rollback:{backend_kind(label)}")
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

