"""Drift: do the backends, the state store and MotherDuck agree about an account's token?

`check_account()` gathers, by reads only (no lease, no writes, no mutating calls), what
each backend serves (token id and version), what the state store believes (current token,
active run, run history) and MotherDuck's live token list; `assess()` is the pure decision
over those facts and returns `Finding`s:

    critical  backend_on_dead_token   a backend serves a token MotherDuck does not list
              backend_empty           a backend holds no token at all
              backend_unreadable      a backend could not be read
              backends_disagree       ... and one of them is on a dead token
              state_token_dead        the store's current token is not live
              motherduck_unreachable  the live list could not be read (nothing verified)
              backend_value_mismatch  a value is not the token its token_id names (its
                                      fingerprint differs) and is no token rotator knows
    warning   backends_disagree       backends serve different live tokens
              backend_token_id_unknown  a value without a token id (matched by fingerprint
                                      where the store can, else reported)
              state_mismatch          the store's current token is not what backends serve
              orphaned_run_token      a token one of our runs created, live, held by nobody
              unknown_live_token      a live token no backend holds and no run created
              expires_before_due      a served token expires before created + rotate_after
    info      run_in_progress         mixed backends explained by an unfinished run

Expected states are not drift: during an `awaiting_revoke` grace the old and the new
token are both live, and an unfinished run may leave backends on its old or new token.
Extra tokens are listed, never revoked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rotator.config import AccountConfig, Policy
from rotator.engine.runrecord import (
    BEFORE_PROMOTE,
    AccountRecord,
    Run,
    RunState,
    TokenRef,
    identify,
)
from rotator.errors import BackendError, RateLimited, ServerError, TransportError
from rotator.motherduck.client import TokenInfo
from rotator.tables import format_time

if TYPE_CHECKING:
    from rotator.engine.workflow import Engine

__all__ = [
    "BackendView",
    "DriftReport",
    "Finding",
    "assess",
    "check_account",
    "scheduled_rotation_at",
]

Severity = Literal["info", "warning", "critical"]
RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
_MIXED_OK = BEFORE_PROMOTE | {RunState.ROLLING_BACK, RunState.FAILED_NEEDS_ATTENTION}


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    message: str
    backend: str | None = None
    token_id: str | None = None


@dataclass(frozen=True, slots=True)
class BackendView:
    """What one backend serves now, secret-free. `id_source` says where token_id came from."""

    label: str
    token_id: str | None = None
    version: str | None = None
    id_source: str | None = None  # "backend" | "fingerprint" | None
    empty: bool = False
    error: str | None = None
    # Set when the value is not the token its stored token_id names (its fingerprint
    # differs from the one recorded for that id): the id the backend claims.
    claimed_id: str | None = None


@dataclass(frozen=True, slots=True)
class DriftReport:
    account: str
    checked_at: str
    findings: tuple[Finding, ...]
    backends: tuple[BackendView, ...]
    state_token_id: str | None
    live_token_ids: tuple[str, ...] | None
    active_run: str | None = None
    pending_revoke_at: str | None = None
    expected: tuple[str, ...] = field(default_factory=tuple)

    @property
    def worst(self) -> str | None:
        return max((f.severity for f in self.findings), key=RANK.__getitem__, default=None)

    def fails(self, fail_on: str) -> bool:
        """`any`: a warning or critical finding; `critical`: a critical one. Info never fails."""
        floor = RANK["critical"] if fail_on == "critical" else RANK["warning"]
        return any(RANK[f.severity] >= floor for f in self.findings)

    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in RANK}

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "checked_at": self.checked_at,
            "drift": self.worst,
            "state_token_id": self.state_token_id,
            "live_token_ids": None if self.live_token_ids is None else list(self.live_token_ids),
            "backends": [asdict(b) for b in self.backends],
            "active_run": self.active_run,
            "pending_revoke_at": self.pending_revoke_at,
            "expected": list(self.expected),
            "findings": [asdict(f) for f in self.findings],
        }


def scheduled_rotation_at(current: TokenRef | None, policy: Policy) -> datetime | None:
    """When `rotate` will next consider the token due (None: due now, or age unknown)."""
    if current is None or not current.created_ts:
        return None
    due = datetime.fromisoformat(current.created_ts) + policy.rotate_after
    if current.expire_at:
        due = min(due, datetime.fromisoformat(current.expire_at) - policy.rotate_before_expiry)
    return due


def assess(
    *,
    policy: Policy,
    backends: Sequence[BackendView],
    record: AccountRecord,
    active: Run | None,
    runs: Sequence[Run],
    live: Sequence[TokenInfo],
) -> list[Finding]:
    """The findings for one account from facts already gathered (no I/O)."""
    live_by_id = {t.id: t for t in live}
    findings = [_backend_finding(b, live_by_id) for b in backends]
    found = [f for f in findings if f is not None]
    held = {b.token_id for b in backends if b.token_id}
    in_flight = _run_tokens(active)
    mixed_ok = active is not None and active.state in _MIXED_OK and held <= in_flight
    if len(held) > 1:
        found.append(_disagreement(backends, live_by_id, active if mixed_ok else None))
    current = record.current_token
    if current is not None and current.id not in live_by_id:
        found.append(
            Finding(
                "critical",
                "state_token_dead",
                f"the state store's current token {current.id} is not live in MotherDuck",
                token_id=current.id,
            )
        )
    elif current is not None and held and not mixed_ok and current.id not in held:
        found.append(
            Finding(
                "warning",
                "state_mismatch",
                f"the state store believes {current.id} is current; backends serve "
                + ", ".join(sorted(held)),
                token_id=current.id,
            )
        )
    found += _extras(live, held | in_flight | ({current.id} if current else set()), runs)
    found += _expiring(held, live_by_id, policy)
    return found


def _backend_finding(view: BackendView, live: dict[str, TokenInfo]) -> Finding | None:
    if view.claimed_id is not None:
        return _mismatch_finding(view, live)
    if view.error is not None:
        return Finding("critical", "backend_unreadable", view.error, backend=view.label)
    if view.empty:
        return Finding(
            "critical", "backend_empty", f"{view.label} holds no token", backend=view.label
        )
    if view.token_id is None:
        return Finding(
            "warning",
            "backend_token_id_unknown",
            f"{view.label} holds a token whose id is unknown (no token_id stored beside it and "
            "no fingerprint match); it cannot be checked against MotherDuck",
            backend=view.label,
        )
    if view.token_id not in live:
        return Finding(
            "critical",
            "backend_on_dead_token",
            f"{view.label} serves token {view.token_id}, which MotherDuck does not list as "
            "live (revoked, expired or unknown): its consumers are failing",
            backend=view.label,
            token_id=view.token_id,
        )
    return None


def _mismatch_finding(view: BackendView, live: dict[str, TokenInfo]) -> Finding:
    """A value edited without its token_id: judged by what the value is, not what it says."""
    says = f"{view.label} says token_id {view.claimed_id}, but its value is "
    if view.token_id is None:
        return Finding(
            "critical",
            "backend_value_mismatch",
            says + f"not that token (its fingerprint differs from the one recorded for "
            f"{view.claimed_id}) nor any token rotator recorded: edited by hand? its consumers "
            "may be failing",
            backend=view.label,
            token_id=view.claimed_id,
        )
    if view.token_id not in live:
        return Finding(
            "critical",
            "backend_on_dead_token",
            says + f"token {view.token_id}, which MotherDuck does not list as live (revoked, "
            "expired or unknown): its consumers are failing",
            backend=view.label,
            token_id=view.token_id,
        )
    return Finding(
        "warning",
        "backend_value_mismatch",
        says + f"the live token {view.token_id} (matched by fingerprint)",
        backend=view.label,
        token_id=view.token_id,
    )


def _disagreement(
    backends: Sequence[BackendView], live: dict[str, TokenInfo], active: Run | None
) -> Finding:
    where = ", ".join(f"{b.label}={b.token_id}" for b in backends if b.token_id)
    if active is not None:
        return Finding(
            "info",
            "run_in_progress",
            f"backends differ ({where}) while run {active.run_id} is {active.state.value}; "
            "the next `rotator rotate` finishes or rolls it back",
        )
    dead = any(b.token_id not in live for b in backends if b.token_id)
    return Finding(
        "critical" if dead else "warning",
        "backends_disagree",
        f"backends serve different tokens: {where}",
    )


def _run_tokens(run: Run | None) -> set[str]:
    if run is None:
        return set()
    return {t.id for t in (run.old_token, run.new_token) if t is not None}


def _extras(live: Sequence[TokenInfo], accounted: set[str], runs: Sequence[Run]) -> list[Finding]:
    created = {r.new_token.id: r.run_id for r in runs if r.new_token is not None}
    for run in runs:
        created.update(dict.fromkeys(run.lost_token_ids, run.run_id))
    # A create that committed after its run stopped looking has an id no run recorded,
    # but it carries the run's deterministic token name.
    named_by = {r.token_name: r.run_id for r in runs}
    found = []
    for token in live:
        if token.id in accounted:
            continue
        named = f" ({token.name})" if token.name else ""
        maker = created.get(token.id) or (named_by.get(token.name) if token.name else None)
        if maker is not None:
            found.append(
                Finding(
                    "warning",
                    "orphaned_run_token",
                    f"token {token.id}{named} was created by run {maker}, is live and "
                    "no backend holds it; revoke it by hand if nothing uses it",
                    token_id=token.id,
                )
            )
        else:
            found.append(
                Finding(
                    "warning",
                    "unknown_live_token",
                    f"live token {token.id}{named} is held by no backend and was made by no "
                    "rotator run (listed, not revoked)",
                    token_id=token.id,
                )
            )
    return found


def _expiring(held: set[str], live: dict[str, TokenInfo], policy: Policy) -> list[Finding]:
    found = []
    for token_id in sorted(held):
        token = live.get(token_id)
        if token is None or token.expire_at is None or token.created_ts is None:
            continue
        due = token.created_ts + policy.rotate_after
        if token.expire_at < due:
            early = token.expire_at - policy.rotate_before_expiry
            found.append(
                Finding(
                    "warning",
                    "expires_before_due",
                    f"token {token_id} expires at {format_time(token.expire_at)}, before its "
                    f"scheduled rotation at {format_time(due)} (rotate_after); only a run "
                    f"between {format_time(early)} and its expiry keeps consumers working",
                    token_id=token_id,
                )
            )
    return found


# -- gathering (reads only) ------------------------------------------------------------


def check_account(engine: Engine, account: AccountConfig) -> DriftReport:
    """Gather the facts for one account and assess them. Raises config/auth errors only."""
    name = account.username
    record = engine.account_record(name)
    runs = [r for r in map(engine.load_run, record.runs) if r is not None]
    active = next((r for r in runs if r.run_id == record.active_run_id), None)
    if active is None and record.active_run_id:
        active = engine.load_run(record.active_run_id)
    if active is not None and active.terminal:
        active = None
    refs = [t for t in (record.current_token, *_refs(runs)) if t is not None and t.fingerprint]
    key = engine.store.fingerprint_key() if refs else None  # exists once a fingerprint does
    views = tuple(_read(b, refs, key) for b in engine.backends(account))
    now = engine.clock()
    try:
        live: list[TokenInfo] | None = engine.client.list_tokens(name)
    except (TransportError, ServerError, RateLimited) as exc:
        live = None
        findings = [Finding("critical", "motherduck_unreachable", f"cannot list tokens: {exc}")]
        findings += [f for v in views if (f := _unreadable(v)) is not None]
    if live is not None:
        findings = assess(
            policy=account.policy,
            backends=views,
            record=record,
            active=active,
            runs=runs,
            live=live,
        )
    expected = []
    if active is not None and active.state is RunState.AWAITING_REVOKE and active.old_token:
        expected.append(
            f"old token {active.old_token.id} stays live until "
            f"{format_time(active.revoke_not_before)} "
            "(revoke grace)"
        )
    return DriftReport(
        account=name,
        checked_at=now.isoformat(),
        findings=tuple(findings),
        backends=views,
        state_token_id=record.current_token.id if record.current_token else None,
        live_token_ids=tuple(t.id for t in live) if live is not None else None,
        active_run=f"{active.run_id} ({active.state.value})" if active else None,
        pending_revoke_at=active.revoke_not_before if active else None,
        expected=tuple(expected),
    )


def _unreadable(view: BackendView) -> Finding | None:
    return (
        None
        if view.error is None
        else Finding("critical", "backend_unreadable", view.error, backend=view.label)
    )


def _refs(runs: Sequence[Run]) -> list[TokenRef | None]:
    return [t for r in runs for t in (r.old_token, r.new_token)]


def _read(backend: Any, refs: Sequence[TokenRef], key: bytes | None) -> BackendView:
    label = backend.label
    try:
        stored = backend.read_current()
    except BackendError as exc:
        return BackendView(label, error=f"{label} could not be read: {exc}")
    if stored is None:
        return BackendView(label, empty=True)
    token_id, source, claimed = identify(stored, refs, key)
    return BackendView(label, token_id, stored.version, source, claimed_id=claimed)
