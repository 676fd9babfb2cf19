"""The forward steps that put the new token in place: create, store, verify, promote.

One job: mint the replacement once, stage it in every backend, check it as read back
from each, and promote it where a backend tells pending from current. It carries I3 (one
replacement per run: a resumed create sweeps by name before it mints again, and a stored
token is never minted twice), I1 (nothing is promoted until every backend holds the new
token and its checks passed), I4 (every effect is fenced first) and I5 (the secret stays
in memory; the checkpoint keeps its fingerprint). A failure raises StepFailed, and the
loop in runner.py rolls back (I6).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from backends import TokenRecord
from rotator.engine.runcontext import StepFailed
from rotator.engine.runrecord import BackendProgress, Run, RunState, TokenRef
from rotator.engine.sweep import Sweeps
from rotator.errors import BackendError, CheckFailed, MotherDuckError, OutcomeUnknown
from rotator.secret import Secret
from rotator.verify.checks import CheckContext, run_with_attempts

if TYPE_CHECKING:
    from rotator.motherduck.client import TokenInfo

__all__ = ["ForwardSteps", "backend_kind", "token_ref"]

log = structlog.get_logger("rotator.workflow")

MAX_CREATE_ATTEMPTS = 3


class ForwardSteps(Sweeps):
    """create -> store -> verify -> promote, each acting once and naming the next state."""

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
        run.new_token = token_ref(created.info, fingerprint=created.token.fingerprint(self.key))
        log.info("token.created", token_id=created.info.id, token_name=run.token_name)
        return RunState.CREATED

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
            self._fence(f"stage:{backend_kind(label)}")
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
                        check,
                        ctx,
                        attempts=attempts,
                        interval=interval,
                        sleep=self._wait,
                        before=self._before_check(check.name),
                    )
                except CheckFailed as exc:
                    raise StepFailed(str(exc)) from exc
            log.info("backend.verified", backend=label, checks=[c.name for c, _, _ in checks])
        return RunState.VERIFIED

    def _before_check(self, name: str) -> Callable[[], None]:
        """I4 before each attempt of a check that sends the new token out (all but the
        local `readback`): the lease is checked and, with under half its time left,
        renewed, so the attempt cannot outlast it (config/rules.step_budget)."""
        if name == "readback":
            return lambda: None
        return lambda: self._fence(f"check:{name}", barrier=False)

    def _promote(self, run: Run) -> RunState:
        assert run.new_token is not None
        last = list(self.backends)[-1] if self.backends else None
        for label, backend in self.backends.items():
            progress = run.backends[label]
            if progress.state == "promoted":
                continue
            progress.state = "promoting"
            self._save(run)
            self._fence(f"promote:{backend_kind(label)}")
            try:
                backend.promote(progress.receipt or {}, run_id=run.run_id)
            except BackendError as exc:
                progress.error = str(exc)
                raise StepFailed(f"promoting in {label} failed: {exc}") from exc
            progress.state = "promoted"
            if label != last:  # the last one's outcome goes with the account record below
                self._save(run)
            log.info("backend.promoted", backend=label, token_id=run.new_token.id)
        # One save, run document first: torn between the two (TestTornSaves), it is the
        # state the separate saves had in between; the account record then names the new
        # token, as it must before anything revokes the old one.
        self.record.current_token = run.new_token
        self._save(run, account=True)
        return RunState.PROMOTED

    def _after_store(self, run: Run) -> RunState:
        self._hook("after_store", run)
        return RunState.VERIFYING


def backend_kind(label: str) -> str:
    """A backend label's type (`vault:secret/x` -> `vault`): the name of its stall points."""
    return label.split(":", 1)[0]


def token_ref(info: TokenInfo, *, fingerprint: str | None = None) -> TokenRef:
    return TokenRef(
        id=info.id,
        name=info.name,
        created_ts=info.created_ts.isoformat() if info.created_ts else None,
        expire_at=info.expire_at.isoformat() if info.expire_at else None,
        fingerprint=fingerprint,
    )
