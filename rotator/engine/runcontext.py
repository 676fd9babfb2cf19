"""What every step of a run shares: collaborators, checkpoint writes, transitions, hooks.

The step mixins (sweep, forward, revoking, rollback) and `Runner` (the loop) build on
this; nothing here decides what happens next.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from backends import Backend, StoredToken
from backends._lease import LeaseGuard
from rotator.config import AccountConfig, Config
from rotator.engine.outcome import token_id as _id
from rotator.engine.runrecord import AccountRecord, Run, RunState, TokenRef, token_name_for
from rotator.errors import BackendError, ConfigError, HookFailed, LeaseLost, MotherDuckError
from rotator.events import EventSink, RunEvent
from rotator.secret import Secret
from rotator.state.lease import RENEW_FRACTION, Lease
from rotator.state.store import StateStore
from rotator.util import pausepoints
from rotator.verify.check import Check
from rotator.verify.hooks import HookPoint, run_hook

if TYPE_CHECKING:
    from rotator.motherduck.client import MotherDuckClient, TokenInfo

__all__ = ["EngineParts", "RunContext", "StepFailed"]

log = structlog.get_logger("rotator.workflow")

_ACCOUNT_FACTS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(AccountRecord) if f.name != "version"
)
"""The account record's fields that `_account_facts` compares (all but the write counter)."""
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
"""Types `copy.copy` returns as they are: their values skip the call."""


class EngineParts(Protocol):
    """What a run uses of the Engine that drives it (workflow.Engine is one).

    A protocol rather than the Engine class, so that the run modules do not import the
    workflow module that imports them.
    """

    config: Config
    store: StateStore
    on_event: EventSink | None
    clock: Callable[[], datetime]
    effect_gate: Callable[[], None] | None

    @property
    def client(self) -> MotherDuckClient: ...

    def load_run(self, run_id: str) -> Run | None: ...

    def account_record(self, username: str) -> AccountRecord: ...

    def backends(self, account: AccountConfig) -> Sequence[Backend]: ...

    def checks(self, account: AccountConfig) -> list[tuple[Check, int, float]]: ...


class StepFailed(Exception):
    """A step failed in a way that calls for rollback; carries the reason in words."""


def _unknown_tokens(account: str, unknown: dict[str, str], store: str) -> ConfigError:
    """Refuse to mint over live tokens the state store does not know (a lost or other store).

    Rotating would overwrite the backends and leave that token live and tracked by nothing
    (I2). A person decides: adopt it (the next rotation then revokes it), or fix the backend.
    """
    where = ", ".join(f"{label} serves {tid}" for label, tid in sorted(unknown.items()))
    ids = sorted(set(unknown.values()))
    if len(ids) == 1:
        todo = f"if it is this account's token, run `rotator adopt {account} --token-id {ids[0]}`"
    else:
        todo = (
            "the backends disagree; make them serve one token (see `rotator drift "
            f"{account}`), then `rotator adopt {account} --token-id ID` with that token's id"
        )
    return ConfigError(
        f"account {account!r}: {where}, a live token the state store ({store}) does not "
        f"know (lost or different state store?); not minting over it: {todo}, then rotate again"
    )


class RunContext:
    """One account's run under one lease: its collaborators and the bookkeeping every step uses.

    Holds the new token's secret in memory only.
    """

    def __init__(
        self,
        engine: EngineParts,
        account: AccountConfig,
        lease: Lease,
        *,
        until: RunState | None = None,
        stage_only: str | None = None,
    ) -> None:
        self.until = until
        self.stage_only = stage_only
        self.e = engine
        self.account = account
        self.name = account.username
        self.lease = lease
        self.policy = account.policy
        self.backends = {b.label: b for b in engine.backends(account)}
        self.checks = engine.checks(account)
        self.key = engine.store.fingerprint_key()
        self.secret: Secret | None = None
        self.old_secret: Secret | None = None
        self.record = engine.account_record(self.name)
        self._account_saved = self._account_facts()
        self._unsaved = False  # a transition made with save=False is not in the store yet
        self._renew_every = self.policy.lease_ttl.total_seconds() / RENEW_FRACTION
        self._renewed_at = time.monotonic()
        guard = LeaseGuard(lease.fence, self._fence)
        for backend in self.backends.values():
            bind = getattr(backend, "bind_lease", None)
            if callable(bind):
                bind(guard)

    def _fence(self, effect: str, *, barrier: bool = True) -> None:
        """I4: check (and renew) the lease immediately before an external side effect.

        Re-reads the lease from the state store under our fencing number and extends it;
        raises LeaseLost when another run has taken the account over, so a stalled run
        stops before the effect instead of after its next checkpoint. `effect` names the
        effect (and is the `fence:<effect>` stall point of the test harness). It is also
        the store's durability barrier; `barrier=False` (a store with `check_lease`) skips
        that for a fence followed only by reads, whose effect has a barrier of its own.
        """
        self._gate()
        check = None if barrier else getattr(self.e.store, "check_lease", None)
        self.lease = check(self.lease) if check is not None else self.e.store.save(self.lease)
        self._renewed_at = time.monotonic()
        pausepoints.reached(f"fence:{effect}")

    def _gate(self) -> None:
        """Before a checkpoint or side effect: wait for what the engine's caller left pending.

        The CLI's admin-token probe answers meanwhile; its error stops the run here, before
        the run's first write (`_save`) or effect (`_fence`), with nothing done.
        """
        gate = self.e.effect_gate
        if gate is not None:
            gate()

    def _keep_lease(self) -> None:
        """During a long wait: check and renew the lease once per renewal interval."""
        if time.monotonic() - self._renewed_at >= self._renew_every:
            self.lease = self.e.store.save(self.lease)
            self._renewed_at = time.monotonic()

    def _wait(self, seconds: float) -> None:
        """Sleep `seconds` (a check's retry interval) without letting the lease lapse."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._keep_lease()
            time.sleep(min(left, self._renew_every))

    def _fence_created(self, info: TokenInfo) -> None:
        """A create answered after our lease was lost: revoke what we minted, then stop (I2).

        Nothing can serve that token: a successor that found it by name had no secret for
        it and revoked it itself, so the revoke here is safe without the lease.
        """
        try:
            self._fence("motherduck.created")
        except LeaseLost:
            log.warning("token.stale_create_revoked", token_id=info.id)
            with contextlib.suppress(MotherDuckError):
                self.e.client.revoke_token(self.name, info.id)
            raise

    def _served_token_ids(self) -> set[str]:
        """The token ids the backends serve now (read again; ids a backend cannot tell skipped)."""
        served = set()
        for backend in self.backends.values():
            stored = backend.read_current()
            if stored is not None and stored.token_id:
                served.add(stored.token_id)
        return served

    def _hook(self, point: HookPoint, run: Run) -> None:
        """Run a configured hook once per run; after_store/after_promote may demand rollback."""
        spec = getattr(self.policy.hooks, point)
        if spec is None or point in run.hooks_done:
            return
        token = self._new_secret_quietly(run) if spec.pass_token else None
        facts = {
            "account": self.name,
            "run_id": run.run_id,
            "state": run.state.value,
            "old_token_id": _id(run.old_token),
            "new_token_id": _id(run.new_token),
            "failure": run.failure,
        }
        self._flush(run)  # the state the hook is told of is on file before it runs
        self._fence(f"hook:{point}")
        try:
            run_hook(point, spec, facts=facts, token=token, cwd=self.e.config.base_dir)
        except HookFailed as exc:
            rollback = spec.on_error == "rollback" and point in ("after_store", "after_promote")
            log.warning("hook.failed", hook=point, error=str(exc), rolls_back=rollback)
            if rollback:
                raise StepFailed(str(exc)) from exc
        run.hooks_done.append(point)
        self._save(run)

    def _new_secret_quietly(self, run: Run) -> Secret | None:
        """The new token for a hook that asked for it, if any backend still has it."""
        if self.secret is not None or run.new_token is None:
            return self.secret
        for backend in self.backends.values():
            try:
                stored = backend.read_staged(run.run_id) or backend.read_current()
            except BackendError:
                continue
            if stored is not None and self._matches(stored, run.new_token):
                return stored.token
        return None

    # -- bookkeeping -------------------------------------------------------------------

    def _preflight(self) -> None:
        """Read all a rotation needs before anything is minted; raise on the first problem."""
        live = {t.id for t in self.e.client.list_tokens(self.name)}
        current = self.record.current_token
        unknown: dict[str, str] = {}
        for label, backend in self.backends.items():
            stored = backend.read_current()
            if stored is not None and current is not None and stored.token_id == current.id:
                self.old_secret = stored.token  # memory only: for confirm_revoked
            elif stored is not None and stored.token_id in live:
                unknown[label] = stored.token_id  # live, served, and not ours to replace
            log.debug("backend.preflight_ok", backend=label)
        if unknown:
            raise _unknown_tokens(self.name, unknown, self.e.store.describe())
        if current is not None and current.id not in live:
            log.warning("token.current_not_live", token_id=current.id)

    def _start(self, run_id: str, trigger: str, reason: str) -> Run:
        now = self.e.clock().isoformat()
        run = Run(
            run_id=run_id,
            account=self.name,
            state=RunState.PLANNED,
            token_name=token_name_for(self.name, run_id),
            started_at=now,
            updated_at=now,
            trigger=trigger,
            old_token=self.record.current_token,
        )
        run.events.append({"at": now, "state": run.state.value, "detail": reason})
        self.record.active_run_id = run.run_id
        self.record.runs = [*self.record.runs, run.run_id][-50:]
        # Saved on its own although the create's intent follows at once: from here on the
        # run is the account's active run for anyone who looks (a second process deciding
        # whether to resume it, or that nothing is due).
        self._save(run, account=True)
        log.info("run.started", run_id=run_id, reason=reason, old_token_id=_id(run.old_token))
        return run

    def _active_run(self) -> Run | None:
        if not self.record.active_run_id:
            return None
        run = self.e.load_run(self.record.active_run_id)
        return None if run is None or run.terminal else run

    def _transition(
        self, run: Run, state: RunState, detail: str | None = None, *, save: bool = True
    ) -> None:
        """Move the run to `state` and checkpoint it.

        `save=False` is for a step that writes its own intent before its first side effect:
        the new state then reaches the store with that write (or with `_flush`), one
        checkpoint fewer. A transition that changes the account record always saves.
        """
        log.info(
            "run.transitioned", run_id=run.run_id, from_state=run.state.value, to_state=state.value
        )
        previous = run.state
        run.state = state
        run.events.append(
            {"at": self.e.clock().isoformat(), "state": state.value, "detail": detail}
        )
        finished = state in (RunState.COMPLETED, RunState.ROLLED_BACK)
        if finished or state is RunState.FAILED_NEEDS_ATTENTION:
            self.record.last_run_id = run.run_id
            self.record.last_state = state.value
            self.record.last_finished_at = self.e.clock().isoformat()
            if state is RunState.COMPLETED:
                self.record.last_success_at = self.record.last_finished_at
            if finished:
                self.record.active_run_id = None
        # The run is rewritten at a transition; the account record only when a finished run
        # changed it (most transitions do not, and the store writes one file less).
        account = self._account_facts() != self._account_saved
        if save or account:
            self._save(run, account=account)
        else:
            self._unsaved = True
        pausepoints.reached(f"state:{state.value}")
        if self.e.on_event is not None:
            self.e.on_event(self._event(run, previous, detail))

    def _event(self, run: Run, previous: RunState, detail: str | None) -> RunEvent:
        now = self.e.clock()
        return RunEvent(
            at=now.isoformat(),
            account=self.name,
            run_id=run.run_id,
            from_state=previous.value,
            to_state=run.state.value,
            trigger=run.trigger,
            duration_seconds=(now - datetime.fromisoformat(run.started_at)).total_seconds(),
            old_token_id=_id(run.old_token),
            new_token_id=_id(run.new_token),
            old_token_created_ts=run.old_token.created_ts if run.old_token else None,
            new_token_created_ts=run.new_token.created_ts if run.new_token else None,
            detail=detail,
            failure=run.failure,
        )

    def _save(self, run: Run | None = None, *, account: bool = False) -> None:
        self._gate()
        now = self.e.clock().isoformat()
        run_doc = None
        if run is not None:
            run.updated_at = now
            run.version += 1
            run_doc = run.to_doc()
        account_doc = None
        if account:
            self.record.version += 1
            account_doc = self.record.to_doc()
        self.lease = self.e.store.save(self.lease, run=run_doc, account=account_doc)
        if run is not None:
            self._unsaved = False
        if account:
            self._account_saved = self._account_facts()

    def _flush(self, run: Run) -> None:
        """Write a transition made with `save=False` that no later save has carried yet."""
        if self._unsaved:
            self._save(run)

    def _account_facts(self) -> tuple[object, ...]:
        """The account record's fields but its version (the write counter), copied one level."""
        record = self.record
        return tuple(
            value if value.__class__ in _IMMUTABLE else copy.copy(value)
            for value in map(record.__getattribute__, _ACCOUNT_FACTS)
        )

    def _matches(self, stored: StoredToken, token: TokenRef) -> bool:
        return (
            stored.token.fingerprint(self.key) == token.fingerprint
            if token.fingerprint
            else stored.token_id == token.id
        )
