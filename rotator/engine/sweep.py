"""Revoking, by name, the tokens of rotator's own making that nothing will ever use.

One job: find the tokens a run minted but cannot use — a create whose answer was lost, a
token that committed after the run moved on, a stale holder's late mint — and revoke
them before the run ends. It carries I2 (nothing orphaned), and I1 and I4 where it meets
them: a token some backend serves is never swept (I1), and every revoke is fenced (I4).
A create MotherDuck cannot fence is caught here by the successor's sweep.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from rotator.engine.outcome import token_id as _id
from rotator.engine.runcontext import RunContext
from rotator.engine.runrecord import Run, RunState, token_name_for

if TYPE_CHECKING:
    from rotator.motherduck.client import TokenInfo

__all__ = ["Sweeps"]

log = structlog.get_logger("rotator.workflow")

SETTLE_FIRST_PAUSE = 0.1  # seconds between listings while a create may still commit
SETTLE_MAX_PAUSE = 2.0


class Sweeps(RunContext):
    """The sweeps the create, revoke and rollback steps share."""

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

