"""The durable record of one rotation, its states, and the plain decisions made over it.

Nothing here does I/O: the workflow loads a `Run`, asks these functions what to do, acts,
and saves. Every field is secret-free (ids, names, versions, an HMAC fingerprint).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rotator.errors import StateError
from rotator.schedule import decide

if TYPE_CHECKING:
    from backends import StoredToken

__all__ = [
    "AccountRecord",
    "BackendProgress",
    "Run",
    "RunState",
    "TokenRef",
    "identify",
    "new_run_id",
    "rotation_due",
    "token_name_for",
]


class RunState(StrEnum):
    """Where a run is. Each comment says what is true in the outside world in that state."""

    PLANNED = "planned"  # record written; nothing outside touched yet
    CREATING = "creating"  # intent: POST a token named run.token_name; it may exist
    CREATED = "created"  # the new token exists (id, fingerprint recorded); secret in memory only
    STORING = "storing"  # staging into backends; per-backend progress in run.backends
    STORED = "stored"  # every backend holds the new token (pending or current)
    VERIFYING = "verifying"  # checks running against the read-back values
    VERIFIED = "verified"  # checks passed
    PROMOTING = "promoting"  # making the staged values current, backend by backend
    PROMOTED = "promoted"  # every backend serves the new token; the old one is still valid
    AWAITING_REVOKE = "awaiting_revoke"  # old token owed a revoke at run.revoke_not_before
    REVOKING = "revoking"  # intent: DELETE the old token id; it may be gone already
    COMPLETED = "completed"  # old token revoked and confirmed gone (or there was none)
    ROLLING_BACK = "rolling_back"  # undoing: backends back to old, then revoke the new token
    ROLLED_BACK = "rolled_back"  # backends on the old token, new token revoked (or never made)
    FAILED_NEEDS_ATTENTION = "failed_needs_attention"  # rollback could not finish: run.remaining


TERMINAL = frozenset({RunState.COMPLETED, RunState.ROLLED_BACK})
BEFORE_PROMOTE = frozenset(
    {
        RunState.PLANNED,
        RunState.CREATING,
        RunState.CREATED,
        RunState.STORING,
        RunState.STORED,
        RunState.VERIFYING,
        RunState.VERIFIED,
        RunState.PROMOTING,
    }
)


@dataclass(slots=True)
class TokenRef:
    """A MotherDuck token by id; `fingerprint` is an HMAC of its secret under the store key."""

    id: str
    name: str | None = None
    created_ts: str | None = None
    expire_at: str | None = None
    fingerprint: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> TokenRef | None:
        return cls(**doc) if doc else None


@dataclass(slots=True)
class BackendProgress:
    """One backend's part in a run: `stage`/`promote`/`rollback` intent or outcome."""

    state: str  # staging | staged | promoting | promoted | rolling_back | rolled_back
    receipt: dict[str, Any] | None = None
    error: str | None = None


@dataclass(slots=True)
class Run:
    run_id: str
    account: str
    state: RunState
    token_name: str
    started_at: str
    updated_at: str
    trigger: str = "cli"
    old_token: TokenRef | None = None
    new_token: TokenRef | None = None
    backends: dict[str, BackendProgress] = field(default_factory=dict)
    revoke_not_before: str | None = None
    revoke_attempts: int = 0
    # When the first DELETE of the old token was sent; never cleared (abort refuses after it).
    revoke_sent_at: str | None = None
    create_attempts: int = 0
    # Wall-clock seconds (time.time) when a create still unanswered was sent (None once
    # answered): until create_sent_at + create_settle, a token by this name may appear.
    create_sent_at: float | None = None
    failure: str | None = None
    undone: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    lost_token_ids: list[str] = field(default_factory=list)
    hooks_done: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        # Field by field (what `_plain(self)` gives, the state as its value): this runs at
        # every checkpoint, and the generic walk was two thirds of its cost.
        return {
            "run_id": _leaf(self.run_id),
            "account": _leaf(self.account),
            "state": self.state.value,
            "token_name": _leaf(self.token_name),
            "started_at": _leaf(self.started_at),
            "updated_at": _leaf(self.updated_at),
            "trigger": _leaf(self.trigger),
            "old_token": None if self.old_token is None else _plain(self.old_token),
            "new_token": None if self.new_token is None else _plain(self.new_token),
            "backends": {k: _plain(v) for k, v in self.backends.items()},
            "revoke_not_before": _leaf(self.revoke_not_before),
            "revoke_attempts": _leaf(self.revoke_attempts),
            "revoke_sent_at": _leaf(self.revoke_sent_at),
            "create_attempts": _leaf(self.create_attempts),
            "create_sent_at": _leaf(self.create_sent_at),
            "failure": _leaf(self.failure),
            "undone": _plain(self.undone),
            "remaining": _plain(self.remaining),
            "lost_token_ids": _plain(self.lost_token_ids),
            "hooks_done": _plain(self.hooks_done),
            "events": [_plain(event) for event in self.events],
            "version": _leaf(self.version),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Run:
        try:
            state = RunState(doc["state"])
        except ValueError:
            raise StateError(
                f"run {doc.get('run_id')!r} has unknown state {doc['state']!r}; "
                "was it written by a newer rotator?"
            ) from None
        fields = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        fields["state"] = state
        fields["old_token"] = TokenRef.from_doc(doc.get("old_token"))
        fields["new_token"] = TokenRef.from_doc(doc.get("new_token"))
        fields["backends"] = {k: BackendProgress(**v) for k, v in doc.get("backends", {}).items()}
        return cls(**fields)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(slots=True)
class AccountRecord:
    """What the store believes about an account between runs."""

    account: str
    current_token: TokenRef | None = None
    active_run_id: str | None = None
    last_run_id: str | None = None
    last_state: str | None = None
    last_finished_at: str | None = None
    last_success_at: str | None = None
    runs: list[str] = field(default_factory=list)
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = _plain(self)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None, account: str) -> AccountRecord:
        if not doc:
            return cls(account=account)
        fields = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        fields["current_token"] = TokenRef.from_doc(doc.get("current_token"))
        return cls(**fields)


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _leaf(value: Any) -> Any:
    """A scalar field's value as `_plain` gives it (refusing anything else)."""
    return value if value.__class__ in _LEAVES else _plain(value)


def _plain(value: Any) -> Any:
    """A copy made of plain dicts, lists and scalars: `dataclasses.asdict`, without its cost.

    asdict deep-copies every leaf through `copy.deepcopy`; a run document is written at
    every checkpoint (some 19 times per rotation), where that was 70 us of each save.
    Records hold only dataclasses, dicts, lists, tuples and immutable scalars (a str enum
    stays the member, as with asdict).
    """
    cls = value.__class__
    if cls in _LEAVES or isinstance(value, str):
        return value
    if cls is dict:
        if _LEAVES.issuperset(map(type, value.values())):  # a run's events: C-level copy
            return value.copy()
        return {k: v if v.__class__ in _LEAVES else _plain(v) for k, v in value.items()}
    if cls is list:
        return [v if v.__class__ in _LEAVES else _plain(v) for v in value]
    if cls is tuple:
        return tuple(_plain(v) for v in value)
    names = getattr(cls, "__dataclass_fields__", None)
    if names is not None:
        doc = {}
        for name in names:
            field_value = getattr(value, name)
            doc[name] = field_value if field_value.__class__ in _LEAVES else _plain(field_value)
        return doc
    raise TypeError(f"a run record cannot hold {cls.__name__}")


def new_run_id() -> str:
    """A UUID4: also usable verbatim as an AWS ClientRequestToken."""
    return str(uuid.uuid4())


def token_name_for(account: str, run_id: str) -> str:
    """The deterministic name of a run's replacement token, so resume can find it by listing."""
    return f"rotator-{account}-{run_id.replace('-', '')[:12]}"


def rotation_due(
    current: TokenRef | None,
    *,
    now: datetime,
    rotate_after: timedelta,
    rotate_before_expiry: timedelta,
    force: bool = False,
    window: str | None = None,
    spread: timedelta = timedelta(0),
    account: str = "",
) -> tuple[bool, str]:
    """Should a new rotation start for the current token? Returns (due, reason in words).

    Age and expiry decide, moved later by the account's `spread` offset and held back
    outside the weekly `window` (rules in rotator.schedule); `force` ignores all of them.
    Only the start of a run asks this: a run under way finishes whatever the window says.
    """
    decision = decide(
        account=account,
        created_ts=current.created_ts if current else None,
        expire_at=current.expire_at if current else None,
        has_token=current is not None,
        now=now,
        rotate_after=rotate_after,
        rotate_before_expiry=rotate_before_expiry,
        window=window,
        spread=spread,
        force=force,
    )
    return decision.due, decision.reason


def identify(
    stored: StoredToken, refs: Sequence[TokenRef], key: bytes | None
) -> tuple[str | None, str | None, str | None]:
    """Which token a stored value is: (token id, "backend" | "fingerprint" | None, claimed id).

    The value's fingerprint is compared with the ones recorded for `refs`: a `token_id`
    beside the value is believed unless the value's fingerprint belongs to another token
    or differs from the one recorded for that id (then `claimed id` is what it says).
    """
    digest = stored.token.fingerprint(key) if key is not None else None
    by_print = {r.fingerprint: r.id for r in refs if r.fingerprint}
    actual = by_print.get(digest) if digest is not None else None
    if not stored.token_id:
        return (actual, "fingerprint", None) if actual else (None, None, None)
    recorded = {r.fingerprint for r in refs if r.id == stored.token_id and r.fingerprint}
    if actual == stored.token_id or (actual is None and (digest is None or not recorded)):
        return stored.token_id, "backend", None
    return actual, "fingerprint" if actual else None, stored.token_id
