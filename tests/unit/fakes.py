"""In-memory stand-ins for MotherDuck and a backend, for fast engine tests.

They keep the outside world's truth (which tokens are live, what each backend serves) so
tests can assert invariants exactly as the integration tests do against real servers.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backends.base import Receipt, StoredToken, TokenRecord
from rotator.errors import BackendError, NotFound, OutcomeUnknown
from rotator.motherduck.client import CreatedToken, TokenInfo
from rotator.secret import Secret


class Crash(BaseException):
    """Simulates the process dying: not an Exception, so nothing in rotator catches it."""


@dataclass
class FakeToken:
    info: TokenInfo
    secret: str
    username: str
    live: bool = True


@dataclass
class FakeMotherDuck:
    tokens: dict[str, FakeToken] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    crash_after: set[str] = field(default_factory=set)  # "create" / "revoke": effect, then die
    unknown_after_create: int = 0  # create, then raise OutcomeUnknown this many times
    # Lose the next create's answer while it is still "in flight": it commits only after
    # this many further listings of the account (None: it never commits).
    late_create_after_lists: int | None = -1
    _pending: list[tuple[str, str, int | None]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def seed(self, username: str, name: str = "initial") -> FakeToken:
        info = TokenInfo(
            id=f"tok-{next(self._ids)}",
            name=name,
            created_ts=datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
            expire_at=None,
        )
        token = FakeToken(info, "eyJ" + secrets.token_hex(8), username)
        self.tokens[info.id] = token
        return token

    def create_token(
        self,
        username: str,
        name: str,
        *,
        ttl_seconds: int | None = None,
        token_type: str = "read_write",
    ) -> CreatedToken:
        self.calls.append(("create", name))
        if self.late_create_after_lists is None or self.late_create_after_lists >= 0:
            self._pending.append((username, name, self.late_create_after_lists))
            self.late_create_after_lists = -1
            if "create" in self.crash_after:
                raise Crash("while the create is in flight")
            raise OutcomeUnknown("timed out", username=username, token_name=name, in_flight=True)
        token = self.seed(username, name)
        if "create" in self.crash_after:
            raise Crash("after create")
        if self.unknown_after_create:
            self.unknown_after_create -= 1
            raise OutcomeUnknown("dropped", username=username, token_name=name)
        return CreatedToken(info=token.info, token=Secret(token.secret))

    def list_tokens(self, username: str) -> list[TokenInfo]:
        self.calls.append(("list", username))
        still: list[tuple[str, str, int | None]] = []
        for owner, name, lists_left in self._pending:
            if lists_left == 0:
                self.seed(owner, name)
            else:
                still.append((owner, name, None if lists_left is None else lists_left - 1))
        self._pending = still
        return [t.info for t in self.tokens.values() if t.live and t.username == username]

    def find_tokens_by_name(self, username: str, name: str) -> list[TokenInfo]:
        return [t for t in self.list_tokens(username) if t.name == name]

    def revoke_token(self, username: str, token_id: str) -> bool:
        self.calls.append(("revoke", token_id))
        token = self.tokens.get(token_id)
        if token is None or not token.live or token.username != username:
            if token is None:
                raise NotFound("no such token", status=404, code="NOT_FOUND")
            return False
        token.live = False
        if "revoke" in self.crash_after:
            raise Crash("after revoke")
        return True

    def is_live(self, secret: str) -> bool:
        return any(t.live and t.secret == secret for t in self.tokens.values())

    def live_ids(self, username: str) -> set[str]:
        return {t.info.id for t in self.tokens.values() if t.live and t.username == username}


class MemoryBackend:
    """A backend with a pending slot and a current slot, like a file or AWS secret."""

    def __init__(self, name: str = "mem", current: StoredToken | None = None) -> None:
        self.label = f"memory:{name}"
        self.current = current
        self.pending: tuple[str, StoredToken] | None = None
        self.previous: dict[str, StoredToken | None] = {}
        self.fail: set[str] = set()
        self.crash_after: set[str] = set()

    def _maybe(self, verb: str) -> None:
        if verb in self.fail:
            raise BackendError(f"{self.label}: injected {verb} failure", backend=self.label)

    def read_current(self) -> StoredToken | None:
        self._maybe("read")
        return self.current

    def read_staged(self, run_id: str) -> StoredToken | None:
        if self.pending and self.pending[0] == run_id:
            return self.pending[1]
        if self.current and self.current.run_id == run_id:
            return self.current
        return None

    def stage(self, record: TokenRecord, *, run_id: str) -> Receipt:
        self._maybe("stage")
        value = StoredToken(record.token, record.token_id, record.token_name, run_id=run_id)
        if not (self.current and self.current.run_id == run_id):
            self.pending = (run_id, value)
        self.previous.setdefault(run_id, self.current)
        if "stage" in self.crash_after:
            raise Crash("after stage")
        return {"run": run_id}

    def promote(self, receipt: Receipt, *, run_id: str) -> None:
        self._maybe("promote")
        if self.pending and self.pending[0] == run_id:
            self.current = self.pending[1]
            self.pending = None
        if "promote" in self.crash_after:
            raise Crash("after promote")

    def rollback(self, receipt: Receipt | None, *, run_id: str) -> None:
        self._maybe("rollback")
        if self.pending and self.pending[0] == run_id:
            self.pending = None
        if self.current and self.current.run_id == run_id:
            self.current = self.previous.get(run_id)

    def describe(self) -> dict[str, str]:
        return {"type": "memory"}
