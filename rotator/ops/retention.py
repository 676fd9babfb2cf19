"""Retention of finished runs: `[state] keep_runs` and `rotator state prune`.

`keep_runs = "90d"` keeps finished runs whose last write is younger than 90 days;
`keep_runs = 20` keeps the 20 newest finished runs of each account. What is never
removed: a run that is not finished (in progress, awaiting its revoke, or
`failed_needs_attention`), an account's active run, and its last run (what `status`
reports). "Finished" is `completed` or `rolled_back`.

Removing happens per account under the account's lease, so it never races a rotation:
the account record's run index drops the ids first (a fenced write), then the run
documents are deleted in one batch (`delete_runs`: one durable sync for the batch). A
crash in between, or part way through the batch, leaves unindexed documents, which the
next full `prune` finds by listing the store. Accounts whose lease is held are skipped.

Two ways in:
- `prune_store` lists every run in the store (also runs of removed accounts and runs
  that fell off the 50-entry index): `rotator state prune`.
- `prune_accounts` walks the run index of the named accounts only, reading each run
  until the first one to keep: the cheap trim after a `rotate` pass.

The decisions (`select_prunable`; parsing `keep_runs` is config/keep.py) are plain functions
over frozen values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import structlog

from rotator.config.keep import Keep
from rotator.engine.runrecord import AccountRecord
from rotator.errors import LeaseHeld, RotatorError
from rotator.state.lease import Lease

__all__ = [
    "PruneReport",
    "RunSummary",
    "prune_accounts",
    "prune_store",
    "select_prunable",
]

log = structlog.get_logger("rotator.retention")

FINISHED = frozenset({"completed", "rolled_back"})
Doc = dict[str, Any]


@runtime_checkable
class PrunableStore(Protocol):
    """The store verbs retention uses (FileStore and DynamoDBStore have them)."""

    def acquire_lease(self, account: str, *, owner: str, ttl: timedelta) -> Lease: ...

    def release_lease(self, lease: Lease) -> None: ...

    def load_account(self, account: str) -> Doc | None: ...

    def load_run(self, run_id: str) -> Doc | None: ...

    def save(
        self, lease: Lease, *, run: Doc | None = None, account: Doc | None = None
    ) -> Lease: ...

    def list_runs(self) -> Iterator[Doc]: ...

    def delete_runs(self, run_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    account: str
    state: str
    finished_at: datetime  # the run's last write (`updated_at`)

    @classmethod
    def from_doc(cls, doc: Doc) -> RunSummary:
        return cls(
            run_id=doc["run_id"],
            account=doc["account"],
            state=doc["state"],
            finished_at=datetime.fromisoformat(doc.get("updated_at") or doc["started_at"]),
        )


def select_prunable(
    runs: Iterable[RunSummary], *, keep: Keep, now: datetime, protected: frozenset[str]
) -> list[RunSummary]:
    """The runs `keep` lets go, oldest first. Only finished, unprotected runs ever qualify.

    A count keeps the newest `count` finished runs (protected ones included in the count).
    """
    finished = sorted(
        (r for r in runs if r.state in FINISHED), key=lambda r: r.finished_at, reverse=True
    )
    if keep.count is not None:
        older = finished[keep.count :]
    else:
        assert keep.age is not None
        older = [r for r in finished if r.finished_at < now - keep.age]
    return [r for r in reversed(older) if r.run_id not in protected]


def protected_ids(record: AccountRecord) -> frozenset[str]:
    return frozenset(r for r in (record.active_run_id, record.last_run_id) if r)


@dataclass(slots=True)
class PruneReport:
    removed: list[RunSummary] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (account, why)


def prune_store(
    store: PrunableStore,
    *,
    keep: Keep,
    now: datetime,
    owner: str,
    lease_ttl: timedelta,
    dry_run: bool = False,
) -> PruneReport:
    """Remove what `keep` lets go from every account in the store (see the module doc)."""
    by_account: dict[str, list[RunSummary]] = {}
    for doc in store.list_runs():
        try:
            summary = RunSummary.from_doc(doc)
        except (KeyError, TypeError, ValueError):
            # Not a run this rotator wrote; left for a person (never guessed at).
            log.warning("state.prune_unreadable", run_id=str(doc.get("run_id")))
            continue
        by_account.setdefault(summary.account.lower(), []).append(summary)
    report = PruneReport()
    for runs in by_account.values():

        def choose(record: AccountRecord, runs: list[RunSummary] = runs) -> list[RunSummary]:
            return select_prunable(runs, keep=keep, now=now, protected=protected_ids(record))

        # Worth a lease only if something could go even before the record is read.
        if select_prunable(runs, keep=keep, now=now, protected=frozenset()):
            _prune_one(store, runs[0].account, choose, owner, lease_ttl, dry_run, report)
    return report


def prune_accounts(
    store: PrunableStore,
    accounts: Sequence[str],
    *,
    keep: Keep,
    now: datetime,
    owner: str,
    lease_ttl: timedelta,
) -> PruneReport:
    """Trim the named accounts through their run index only: the cheap trim after a pass.

    Reads the account record, then indexed runs oldest first, stopping at the first run to
    keep; takes the lease only when something goes.
    """
    report = PruneReport()
    for account in accounts:

        def choose(record: AccountRecord) -> list[RunSummary]:
            return _indexed_victims(store, record, keep, now)

        record = AccountRecord.from_doc(store.load_account(account), account)
        if choose(record):
            _prune_one(store, account, choose, owner, lease_ttl, False, report)
    return report


def _indexed_victims(
    store: PrunableStore, record: AccountRecord, keep: Keep, now: datetime
) -> list[RunSummary]:
    """What `keep` lets go among the indexed runs, reading as few run documents as it can.

    The index is in start order and only its active run can be unfinished, so with a
    count the older entries are the candidates (one fewer kept if the active run is among
    the newest), and with an age the walk stops at the first run young enough to keep.
    """
    protected = protected_ids(record)
    ids = list(record.runs)
    if keep.count is not None:
        newest = ids[-keep.count :]
        held = 1 if record.active_run_id in newest else 0
        ids = ids[: max(0, len(ids) - keep.count - held)]
    victims: list[RunSummary] = []
    for run_id in ids:
        doc = store.load_run(run_id)
        if doc is None:
            continue
        run = RunSummary.from_doc(doc)
        if keep.age is not None and run.finished_at >= now - keep.age:
            break
        if run.state in FINISHED and run.run_id not in protected:
            victims.append(run)
    return victims


def _prune_one(
    store: PrunableStore,
    account: str,
    choose: Callable[[AccountRecord], list[RunSummary]],
    owner: str,
    lease_ttl: timedelta,
    dry_run: bool,
    report: PruneReport,
) -> None:
    """Under the account's lease: drop the chosen runs from the index, then delete them."""
    if dry_run:
        report.removed += choose(AccountRecord.from_doc(store.load_account(account), account))
        return
    try:
        lease = store.acquire_lease(account, owner=owner, ttl=lease_ttl)
    except LeaseHeld as exc:
        report.skipped.append((account, str(exc)))
        log.info("state.prune_skipped", account=account, reason="lease held")
        return
    try:
        doc = store.load_account(account)
        record = AccountRecord.from_doc(doc, account)
        victims = choose(record)
        gone = {v.run_id for v in victims}
        if doc is not None and gone & set(record.runs):
            record.runs = [r for r in record.runs if r not in gone]
            record.version += 1
            lease = store.save(lease, account=record.to_doc())
        # One batch: durable once, not once per run (a prune of thousands of runs took
        # one journal sync each).
        store.delete_runs([victim.run_id for victim in victims])
        report.removed += victims
        if victims:
            log.info("state.pruned", account=account, runs=len(victims))
    finally:
        with contextlib.suppress(RotatorError):  # unreleased, it simply expires
            store.release_lease(lease)
