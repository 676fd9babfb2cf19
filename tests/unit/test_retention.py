"""Retention over a real FileStore in a temp dir: what goes, what always stays, the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.config.keep import Keep, parse_keep
from rotator.ops.retention import (
    RunSummary,
    prune_accounts,
    prune_store,
    select_prunable,
)
from rotator.state.file import FileStore

NOW = datetime(2030, 6, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


def run_doc(run_id: str, account: str, state: str, days_ago: int) -> dict[str, object]:
    at = (NOW - timedelta(days=days_ago)).isoformat()
    return {
        "run_id": run_id,
        "account": account,
        "state": state,
        "token_name": f"rotator-{account}-{run_id}",
        "started_at": at,
        "updated_at": at,
        "version": 1,
    }


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    """svc_a: r0 (orphan, 300d), r1 completed 200d, r2 rolled_back 150d,
    r3 failed_needs_attention 120d (active), r4 completed 5d (last); svc_b: b1 completed 100d."""
    fs = FileStore(tmp_path / "state", clock=lambda: NOW, durable=False)
    lease = fs.acquire_lease("svc_a", owner="test", ttl=TTL)
    runs = [
        ("r0", "completed", 300),
        ("r1", "completed", 200),
        ("r2", "rolled_back", 150),
        ("r3", "failed_needs_attention", 120),
        ("r4", "completed", 5),
    ]
    for run_id, state, days in runs:
        lease = fs.save(lease, run=run_doc(run_id, "svc_a", state, days))
    record = {
        "account": "svc_a",
        "runs": ["r1", "r2", "r3", "r4"],  # r0 fell off the index
        "active_run_id": "r3",
        "last_run_id": "r4",
        "version": 1,
    }
    fs.save(lease, account=record)
    fs.release_lease(lease)
    lease_b = fs.acquire_lease("svc_b", owner="test", ttl=TTL)
    lease_b = fs.save(lease_b, run=run_doc("b1", "svc_b", "completed", 100))
    fs.save(lease_b, account={"account": "svc_b", "runs": ["b1"], "version": 1})
    fs.release_lease(lease_b)
    return fs


def run_ids(fs: FileStore) -> set[str]:
    return {doc["run_id"] for doc in fs.list_runs()}


class TestParseKeep:
    def test_age_and_count(self) -> None:
        """'90d' is an age, 20 or '20' a count."""
        assert parse_keep("90d") == Keep(age=timedelta(days=90))
        assert parse_keep(20) == Keep(count=20) == parse_keep("20")

    @pytest.mark.parametrize("value", ["forever", 0, "10s", True, -3])
    def test_bad(self, value: object) -> None:
        """Nonsense, a zero count and a tiny age are refused."""
        with pytest.raises(ValueError):
            parse_keep(value)


class TestSelectPrunable:
    def test_unfinished_and_protected_never_go(self) -> None:
        """Only completed/rolled_back runs qualify, and protected ids stay whatever their age."""
        runs = [
            RunSummary("a", "svc", "completed", NOW - timedelta(days=100)),
            RunSummary("b", "svc", "awaiting_revoke", NOW - timedelta(days=100)),
            RunSummary("c", "svc", "failed_needs_attention", NOW - timedelta(days=100)),
            RunSummary("d", "svc", "rolled_back", NOW - timedelta(days=100)),
        ]
        chosen = select_prunable(
            runs, keep=Keep(age=timedelta(days=90)), now=NOW, protected=frozenset({"d"})
        )
        assert [r.run_id for r in chosen] == ["a"]

    def test_count_counts_the_protected(self) -> None:
        """keep 2 keeps the two newest finished runs, the protected last one among them."""
        runs = [
            RunSummary(f"r{i}", "svc", "completed", NOW - timedelta(days=10 - i)) for i in range(5)
        ]
        chosen = select_prunable(runs, keep=Keep(count=2), now=NOW, protected=frozenset({"r4"}))
        assert [r.run_id for r in chosen] == ["r0", "r1", "r2"]


class TestPruneStore:
    def test_age_removes_old_finished_runs_and_fixes_the_index(self, store: FileStore) -> None:
        """90d: the orphan and the old finished runs go; active and last stay; index agrees."""
        report = prune_store(
            store, keep=Keep(age=timedelta(days=90)), now=NOW, owner="t", lease_ttl=TTL
        )
        assert {r.run_id for r in report.removed} == {"r0", "r1", "r2", "b1"}
        assert run_ids(store) == {"r3", "r4"}
        assert store.load_account("svc_a")["runs"] == ["r3", "r4"]  # type: ignore[index]
        assert store.load_account("svc_b")["runs"] == []  # type: ignore[index]
        assert not (store.root / "runs" / "r1.json").exists()

    def test_dry_run_changes_nothing(self, store: FileStore) -> None:
        """--dry-run reports the same runs and removes none."""
        before = sorted(p.name for p in store.root.rglob("*.json"))
        report = prune_store(
            store, keep=Keep(age=timedelta(days=90)), now=NOW, owner="t", lease_ttl=TTL,
            dry_run=True,
        )
        assert {r.run_id for r in report.removed} == {"r0", "r1", "r2", "b1"}
        assert sorted(p.name for p in store.root.rglob("*.json")) == before
        assert run_ids(store) == {"r0", "r1", "r2", "r3", "r4", "b1"}

    def test_count(self, store: FileStore) -> None:
        """keep 1: per account only the newest finished run (and the active one) stay."""
        prune_store(store, keep=Keep(count=1), now=NOW, owner="t", lease_ttl=TTL)
        assert run_ids(store) == {"r3", "r4", "b1"}

    def test_a_leased_account_is_skipped(self, store: FileStore) -> None:
        """An account being rotated keeps everything; the report says why."""
        lease = store.acquire_lease("svc_a", owner="rotation", ttl=TTL)
        report = prune_store(
            store, keep=Keep(age=timedelta(days=90)), now=NOW, owner="t", lease_ttl=TTL
        )
        store.release_lease(lease)
        assert [a for a, _ in report.skipped] == ["svc_a"]
        assert {"r0", "r1", "r2"} <= run_ids(store)
        assert "b1" not in run_ids(store)


class TestPruneAccounts:
    def test_index_walk_leaves_orphans(self, store: FileStore) -> None:
        """The cheap trim goes through the index: indexed old runs go, the orphan stays."""
        report = prune_accounts(
            store, ["svc_a"], keep=Keep(age=timedelta(days=90)), now=NOW, owner="t", lease_ttl=TTL
        )
        assert [r.run_id for r in report.removed] == ["r1", "r2"]
        assert run_ids(store) == {"r0", "r3", "r4", "b1"}
        assert store.load_account("svc_a")["runs"] == ["r3", "r4"]  # type: ignore[index]

    def test_nothing_to_do_takes_no_lease(self, store: FileStore) -> None:
        """With nothing old enough, the account's lease is never taken (no write at all)."""
        lease_file = store.root / "leases" / "svc_b.json"
        before = lease_file.read_bytes()
        prune_accounts(
            store, ["svc_b"], keep=Keep(age=timedelta(days=365)), now=NOW, owner="t", lease_ttl=TTL
        )
        assert lease_file.read_bytes() == before
        assert "b1" in run_ids(store)
