"""The file store's journal: durable at barriers only, replayed after a reboot (power loss)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import rotator.state.file as checkpoint
import rotator.state.journal as journal
from rotator.errors import LeaseLost
from rotator.state.file import FileStore

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BOOT_A = "0d2f7c1e-aaaa-4c3e-9d55-2f0a8e1b7c01"
BOOT_B = "0d2f7c1e-bbbb-4c3e-9d55-2f0a8e1b7c02"
TTL = timedelta(minutes=5)


def store_on(root: Path, boot: str, monkeypatch: pytest.MonkeyPatch) -> FileStore:
    """A durable FileStore that believes it runs in kernel boot `boot`."""
    monkeypatch.setattr(checkpoint, "boot_id", lambda: boot)
    return FileStore(root, clock=lambda: T0, host="host-a")


def run_path(root: Path, run_id: str) -> Path:
    return root / "runs" / f"{run_id}.json"


def test_documents_are_durable_at_the_barrier_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncs: list[str]
) -> None:
    """Saves with documents do not fsync; the fence (a save without one) syncs the journal
    once, and a second fence with nothing new written syncs nothing."""
    fs = store_on(tmp_path, BOOT_A, monkeypatch)
    fs.fingerprint_key()
    syncs.clear()
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    for version in range(5):
        lease = fs.save(lease, run={"run_id": "r1", "version": version})
    # Written to its file at once (what `status` and other processes read), not fsynced.
    assert json.loads(run_path(tmp_path, "r1").read_text())["version"] == 4
    assert fs.load_run("r1") == {"run_id": "r1", "version": 4, "schema": 1}
    lease = fs.save(lease, account={"account": "svc_a", "version": 1})
    # An account record is written at once, never ahead of the run documents before it.
    assert json.loads(run_path(tmp_path, "r1").read_text())["version"] == 4
    journal_syncs = [p for p in syncs if "/journal/" in p]
    assert [p for p in syncs if "/journal/" not in p] == [str(tmp_path / "journal")]
    assert journal_syncs == []
    lease = fs.save(lease)  # the fence before a side effect
    assert len([p for p in syncs if "/journal/" in p]) == 1
    fs.save(lease)
    assert len([p for p in syncs if "/journal/" in p]) == 1
    assert json.loads(run_path(tmp_path, "r1").read_text())["version"] == 4


def test_release_is_a_barrier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncs: list[str]
) -> None:
    """A run's last records are durable when its lease is released."""
    fs = store_on(tmp_path, BOOT_A, monkeypatch)
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    fs.save(lease, run={"run_id": "r1", "state": "completed"})
    syncs.clear()
    fs.release_lease(lease)
    assert [p for p in syncs if "/journal/" in p] != []


def test_check_lease_fences_without_a_barrier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncs: list[str]
) -> None:
    """`check_lease` (the fence before the revoke's re-reads) checks and renews the lease
    like a fence, syncs nothing, and refuses a lease that was taken over."""
    clock = [T0]
    monkeypatch.setattr(checkpoint, "boot_id", lambda: BOOT_A)
    fs = FileStore(tmp_path, clock=lambda: clock[0], host="host-a")
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    lease = fs.save(lease, run={"run_id": "r1", "state": "awaiting_revoke"})
    syncs.clear()
    clock[0] = T0 + TTL * 0.75  # past half the lease: the check renews it
    renewed = fs.check_lease(lease)
    assert renewed.expires_at == clock[0] + TTL and renewed.fence == lease.fence
    assert syncs == []
    fs.save(renewed, run={"run_id": "r1", "state": "revoking"})
    fs.save(renewed)  # the barrier after the intent covers everything since
    assert len([p for p in syncs if "/journal/" in p]) == 1
    clock[0] = T0 + TTL * 3  # expired: another run takes the account over
    fs.acquire_lease("svc_a", owner="other", ttl=TTL)
    with pytest.raises(LeaseLost):
        fs.check_lease(renewed)


def test_a_later_boot_replays_what_power_loss_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reboot, a document the crash left empty or stale comes back from the journal
    (its last record), and the previous boot's journal is removed."""
    fs = store_on(tmp_path, BOOT_A, monkeypatch)
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    lease = fs.save(lease, run={"run_id": "r1", "version": 1})
    lease = fs.save(lease, run={"run_id": "r1", "version": 2}, account={"account": "svc_a"})
    fs.save(lease)
    # What a power loss may leave: a renamed file whose data never reached the disk, and
    # a rename that never did (the previous version).
    run_path(tmp_path, "r1").write_bytes(b"")
    (tmp_path / "accounts" / "svc_a.json").unlink()

    later = store_on(tmp_path, BOOT_B, monkeypatch)
    assert later.load_run("r1") == {"run_id": "r1", "version": 2, "schema": 1}
    assert later.load_account("svc_a") == {"account": "svc_a", "schema": 1}
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == ["recover.lock"]


def test_a_torn_record_is_skipped_and_the_next_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store_on(tmp_path, BOOT_A, monkeypatch)
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    lease = fs.save(lease, run={"run_id": "r1", "version": 1})
    log = tmp_path / "journal" / f"{BOOT_A}.log"
    with log.open("ab") as handle:
        handle.write(b"\n1234abcd {\"p\": \"runs/r1.json\", \"b\": \"{\\\"ver")  # torn
    lease = fs.save(lease, run={"run_id": "r2", "version": 7})
    fs.save(lease)
    run_path(tmp_path, "r2").unlink()

    later = store_on(tmp_path, BOOT_B, monkeypatch)
    assert later.load_run("r1") == {"run_id": "r1", "version": 1, "schema": 1}
    assert later.load_run("r2") == {"run_id": "r2", "version": 7, "schema": 1}


def test_a_deleted_run_stays_deleted_after_a_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store_on(tmp_path, BOOT_A, monkeypatch)
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    lease = fs.save(lease, run={"run_id": "r1", "version": 1})
    fs.release_lease(lease)
    fs.delete_run("r1")
    later = store_on(tmp_path, BOOT_B, monkeypatch)
    assert later.load_run("r1") is None


def test_foreign_paths_in_a_journal_are_ignored() -> None:
    """Replay writes only the store's own documents, whatever a journal line claims."""
    blob = journal._record("../../etc/passwd.json", b"x") + journal._record("runs/a.json", b"{}")
    assert list(journal.read_records(blob)) == [("runs/a.json", b"{}")]


def test_a_full_journal_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past COMPACT_AT the journal is truncated (after a filesystem sync); documents stay."""
    monkeypatch.setattr(journal, "COMPACT_AT", 2000)
    fs = store_on(tmp_path, BOOT_A, monkeypatch)
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    for version in range(40):
        lease = fs.save(lease, run={"run_id": "r1", "version": version, "pad": "x" * 100})
    assert (tmp_path / "journal" / f"{BOOT_A}.log").stat().st_size < 2000
    assert json.loads(run_path(tmp_path, "r1").read_text())["version"] >= 10  # written first
    assert fs.load_run("r1")["version"] == 39  # type: ignore[index]
    fs.save(lease)
    assert json.loads(run_path(tmp_path, "r1").read_text())["version"] == 39


def test_threads_saving_while_the_journal_compacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight accounts saved from eight threads, with compactions in between: every run file
    ends at its last version, and what the journal still holds replays to the same."""
    monkeypatch.setattr(journal, "COMPACT_AT", 4000)
    fs = store_on(tmp_path, BOOT_A, monkeypatch)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            lease = fs.acquire_lease(f"svc_{n}", owner="t", ttl=TTL)
            for version in range(30):
                lease = fs.save(lease, run={"run_id": f"r{n}", "version": version})
                if version % 7 == 0:
                    lease = fs.save(lease, account={"account": f"svc_{n}", "last": version})
                if version % 5 == 0:
                    lease = fs.save(lease)
            fs.release_lease(lease)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for n in range(8):
        assert json.loads(run_path(tmp_path, f"r{n}").read_text())["version"] == 29
        assert json.loads((tmp_path / "accounts" / f"svc_{n}.json").read_text())["last"] == 28
    later = store_on(tmp_path, BOOT_B, monkeypatch)
    assert all(later.load_run(f"r{n}")["version"] == 29 for n in range(8))  # type: ignore[index]


def test_records_carry_the_bytes_as_they_are_and_replay_both_forms() -> None:
    """A record embeds the document's bytes (no JSON escaping); a path or document holding
    a newline is written in the older JSON form; both forms, and deletions, replay."""
    doc = b'{"run_id": "r1", "detail": "a \\"quoted\\" \\\\ text"}'
    raw = journal._record("runs/r1.json", doc)
    assert doc in raw and raw.count(b"\n") == 2
    odd = journal._record("runs/r2.json", b'{"x": 1}\n')
    assert b'"p": "runs/r2.json"' in odd
    legacy = b"\n%08x %s\n" % (
        journal.zlib.crc32(p := json.dumps({"p": "runs/r3.json", "b": '{"v": 3}'}).encode()), p
    )
    gone = journal._record("runs/r4.json", None)
    blob = raw + odd + legacy + gone + journal._record("runs/r5.json\nx", b"{}")
    assert list(journal.read_records(blob)) == [
        ("runs/r1.json", doc),
        ("runs/r2.json", b'{"x": 1}\n'),
        ("runs/r3.json", b'{"v": 3}'),
        ("runs/r4.json", None),
    ]


def test_a_lease_taken_over_is_seen_by_a_store_that_read_it_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store re-parses a lease only when its bytes change: another process's takeover
    (new bytes) is still what the next save checks against."""
    clock = [T0]
    monkeypatch.setattr(checkpoint, "boot_id", lambda: BOOT_A)
    mine = FileStore(tmp_path, clock=lambda: clock[0], host="host-a")
    other = FileStore(tmp_path, clock=lambda: clock[0], host="host-b")
    lease = mine.acquire_lease("svc_a", owner="one", ttl=TTL)
    lease = mine.save(lease, run={"run_id": "r1", "version": 1})
    assert mine.read_lease("svc_a") == lease
    clock[0] = T0 + TTL * 2
    taken = other.acquire_lease("svc_a", owner="two", ttl=TTL)
    assert mine.read_lease("svc_a") == taken
    with pytest.raises(LeaseLost):
        mine.save(lease, run={"run_id": "r1", "version": 2})
    assert mine.load_run("r1") == {"run_id": "r1", "version": 1, "schema": 1}
