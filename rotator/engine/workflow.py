"""The rotation engine's public face: `Engine` (rotate, plan, abort, adopt) and `Outcome`.

One rotation of one account is create -> store -> verify -> promote -> (grace) ->
revoke, checkpointed at every step (runner.py drives them; the steps live in forward.py,
revoking.py and rollback.py, the shared bookkeeping in runcontext.py). Each step writes
its intent durably before the side effect and its outcome after it; a resumed run asks
the outside world (MotherDuck's token list, each backend's staged value) what happened
instead of trusting memory. A failure before promote rolls back: backends return to the
old token first, and only then is the new token revoked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from rotator.config import AccountConfig, Config
from rotator.durations import format_duration
from rotator.engine.containment import contain, contained
from rotator.engine.outcome import Outcome
from rotator.engine.outcome import token_id as _id
from rotator.engine.runrecord import (
    AccountRecord,
    Run,
    RunState,
    rotation_due,
)
from rotator.errors import ConfigError, RotatorError
from rotator.events import EventSink
from rotator.state.store import StateStore, utcnow

if TYPE_CHECKING:
    from backends import Backend
    from rotator.engine.runner import Runner
    from rotator.motherduck.client import MotherDuckClient  # httpx: at the first client
    from rotator.verify.checks import Check

# The steps of a rotation (runner.py and what it imports), the checks and the backend
# classes are imported where a run needs them: a pass over accounts that are not due
# (most scheduled runs, and every Lambda cold start's) reads one record each and stops.

__all__ = ["Engine", "Outcome"]

Clock = Callable[[], datetime]


class Engine:
    """Drives rotations for the accounts of one config. Safe to share across threads."""

    def __init__(
        self,
        config: Config,
        client: MotherDuckClient | None,
        store: StateStore,
        *,
        client_factory: Callable[[], MotherDuckClient] | None = None,
        clock: Clock = utcnow,
        backends_for: Callable[[AccountConfig], Sequence[Backend]] | None = None,
        owner: str | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.config = config
        # A factory defers reading the admin token until a command needs MotherDuck.
        self._client = client
        self._client_factory = client_factory
        self._client_lock = threading.Lock()
        self.store = store
        self.on_event = on_event
        self.clock = clock
        self._backends_for = backends_for or self._build_backends
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        # Called before a run's every checkpoint and side effect; raising stops the run
        # before it wrote or changed anything (the CLI's admin-token probe, still in flight
        # while the run reads: rotator/cli/wiring.py). None: nothing to wait for.
        self.effect_gate: Callable[[], None] | None = None

    @property
    def client(self) -> MotherDuckClient:
        with self._client_lock:
            if self._client is None:
                if self._client_factory is None:
                    raise RuntimeError("Engine was built without a MotherDuck client")
                self._client = self._client_factory()
            return self._client

    # -- public entry points -------------------------------------------------------------

    def rotate(
        self,
        username: str,
        *,
        force: bool = False,
        revoke_now: bool = False,
        run_id: str | None = None,
        trigger: str = "cli",
        until: RunState | None = None,
        stage_only: str | None = None,
    ) -> Outcome:
        """Run (or resume) the account's rotation. Raises LeaseHeld, ConfigError, StateError.

        `until` stops the run once it reaches that state and `stage_only` stages just one
        backend: together they map Secrets Manager's four rotation steps onto one run.
        An account with no unfinished run whose token is not due is answered from one read
        of its record, without taking the lease (a scheduled run over a fleet is mostly
        that); the answer is the one the leased path gives.
        """
        if not force and run_id is None:
            idle = self.idle(username, trigger=trigger)
            if idle is not None:
                return idle
        with self._leased(username, until=until, stage_only=stage_only) as runner:
            return runner.rotate(force=force, revoke_now=revoke_now, run_id=run_id, trigger=trigger)

    def abort(self, username: str, run_id: str, *, skip_backends: Sequence[str] = ()) -> Outcome:
        """Roll back an unfinished run while that is safe (see engine.safety); else ConfigError.

        `skip_backends` names backends of the run that left the config: they are not
        rolled back (a person vouches that nothing reads them any more).
        """
        with self._leased(username) as runner:
            return runner.abort(run_id, skip_backends=skip_backends)

    def revoke(self, username: str, token_id: str, *, force: bool = False) -> Outcome:
        """Revoke one token of the account (refused while referenced, unless `force`)."""
        from rotator.engine.revoke import revoke_one

        with self._leased(username) as runner:
            return revoke_one(runner, token_id, force=force)

    def adopt(self, username: str, token_id: str, *, force: bool = False) -> Outcome:
        """Record an existing token id as the account's current token (revoked next rotation)."""
        with self._leased(username) as runner:
            return runner.adopt(token_id, force=force)

    def idle(
        self, username: str, *, trigger: str = "cli", record: AccountRecord | None = None
    ) -> Outcome | None:
        """What `rotate` (not forced) answers an account with nothing to do; None if it has work.

        Reads only, no lease: safe to ask for many accounts at once before rotating them.
        `record`: the account's record as just read, instead of reading it again.
        """
        with contained(username):
            return self._not_due_without_lease(username, trigger, record)

    def _not_due_without_lease(
        self, username: str, trigger: str = "cli", record: AccountRecord | None = None
    ) -> Outcome | None:
        """`not_due` when the record shows no run in progress and a token not yet due.

        Reads only. Also answers a scheduled pass that finds a run Secrets Manager drives
        (`in_progress`, left to its steps). Anything else (a run in progress, a due token,
        no record) returns None and goes the leased way, which decides again under the lease.
        """
        account = self.config.account(username)
        if record is None:
            record = self.account_record(account.username)
        if record.active_run_id:
            from rotator.engine.runner import left_to_secretsmanager

            run = self.load_run(record.active_run_id)
            return left_to_secretsmanager(run, trigger) if run is not None else None
        if record.current_token is None:
            return None
        due, reason = rotation_due(
            record.current_token,
            now=self.clock(),
            rotate_after=account.policy.rotate_after,
            rotate_before_expiry=account.policy.rotate_before_expiry,
            window=account.policy.window,
            spread=account.policy.spread,
            account=account.username,
        )
        if due:
            return None
        return Outcome(account.username, "not_due", reason, old_token_id=_id(record.current_token))

    @contextlib.contextmanager
    def _leased(
        self, username: str, *, until: RunState | None = None, stage_only: str | None = None
    ) -> Iterator[Runner]:
        """A Runner for the account under its lease, released however the run ends."""
        from rotator.engine.runner import Runner

        account = self.config.account(username)
        lease = self.store.acquire_lease(
            account.username, owner=self.owner, ttl=account.policy.lease_ttl
        )
        runner = None
        try:
            with structlog.contextvars.bound_contextvars(account=account.username):
                runner = Runner(self, account, lease, until=until, stage_only=stage_only)
                yield runner
        except RotatorError:
            raise
        except Exception as exc:
            # One account's bug or plugin failure must not take a fleet pass down, nor
            # reach a person as a traceback: one line, recorded in the run.
            raise contain(runner, account.username, exc) from None
        finally:
            self.store.release_lease(lease)

    def plan(self, username: str, *, force: bool = False) -> Outcome:
        """What `rotate` would do, from reads only: no lease, no writes, no mutating calls."""
        with contained(username):
            return self._plan(username, force=force)

    def _plan(self, username: str, *, force: bool) -> Outcome:
        account = self.config.account(username)
        record = self.account_record(account.username)
        if record.active_run_id:
            run = self.load_run(record.active_run_id)
            if run is not None and not run.terminal:
                return Outcome(
                    account.username,
                    "would_resume",
                    f"would resume run {run.run_id} from {run.state.value}",
                    run_id=run.run_id,
                    state=run.state.value,
                    old_token_id=_id(run.old_token),
                    new_token_id=_id(run.new_token),
                )
        due, reason = rotation_due(
            record.current_token,
            now=self.clock(),
            rotate_after=account.policy.rotate_after,
            rotate_before_expiry=account.policy.rotate_before_expiry,
            force=force,
            window=account.policy.window,
            spread=account.policy.spread,
            account=account.username,
        )
        old = _id(record.current_token)
        if not due:
            return Outcome(account.username, "not_due", reason, old_token_id=old)
        live = {t.id for t in self.client.list_tokens(account.username)}
        labels = []
        for backend in self.backends(account):
            backend.read_current()
            labels.append(backend.label)
        then = (
            f"revoke {old} after a grace of {format_duration(account.policy.revoke_grace)}"
            if old
            else "revoke nothing (first managed token)"
        )
        if old and old not in live:
            then += f" ({old} is already gone from MotherDuck)"
        message = (
            f"would rotate ({reason}): create a token, store it in {', '.join(labels)}, {then}"
        )
        return Outcome(account.username, "would_rotate", message, old_token_id=old)

    def account_record(self, username: str) -> AccountRecord:
        return AccountRecord.from_doc(self.store.load_account(username), username)

    def load_run(self, run_id: str) -> Run | None:
        doc = self.store.load_run(run_id)
        return Run.from_doc(doc) if doc else None

    def backends(self, account: AccountConfig) -> Sequence[Backend]:
        return self._backends_for(account)

    def checks(self, account: AccountConfig) -> list[tuple[Check, int, float]]:
        from rotator.verify.checks import build_check

        return [
            (
                build_check(
                    spec.type,
                    spec.options,
                    api_url=self.config.motherduck.api_url,
                    base_dir=self.config.base_dir,
                ),
                spec.attempts,
                spec.interval.total_seconds(),
            )
            for spec in account.policy.checks
        ]

    def _build_backends(self, account: AccountConfig) -> Sequence[Backend]:
        from backends import load_factory

        built = [
            load_factory(cfg.type).from_config(
                cfg, account=account.username, base_dir=self.config.base_dir
            )
            for cfg in account.backend_inputs  # no backend model built for a checked table
        ]
        for backend in built:  # fingerprints keyed with the store's secret key, not the run id
            keyed = getattr(backend, "use_fingerprint_key", None)
            if keyed is not None:
                keyed(self.store.fingerprint_key)
        labels = [b.label for b in built]
        if len(set(labels)) != len(labels):
            raise ConfigError(
                f"account {account.username!r} lists the same backend twice: {labels}"
            )
        return built
