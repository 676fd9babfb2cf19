"""Documents rewritten through a spare inode (rotator/state/spare.py): every reader still
sees a whole document, a reader never makes a writer wait, and the file store keeps no
spare of a run past its lease."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.state import journal as journal_module
from rotator.state import spare
from rotator.state.file import FileStore

NOW = datetime(2030, 6, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


def doc(version: int, pad: int = 0) -> bytes:
    return json.dumps({"version": version, "pad": "x" * pad}).encode()


@pytest.fixture(params=["exchange", "rename"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of putting the spare in place: renameat2's exchange, and plain rename
    where the platform has no exchange."""
    if request.param == "rename":
        monkeypatch.setattr(spare, "_exchange", False)
    return str(request.param)


def test_write_replaces_the_document_and_keeps_one_spare(tmp_path: Path, mode: str) -> None:
    d = str(tmp_path)
    sp = f"{d}/.a.json.spare"
    assert spare.write_via_spare(d, "a.json", sp, doc(1, 3000))  # first write: a rename
    assert not os.path.exists(sp)
    assert spare.read_whole(f"{d}/a.json") == doc(1, 3000)
    for version in range(2, 6):  # shorter than before too: the spare is truncated
        assert spare.write_via_spare(d, "a.json", sp, doc(version, 3000 // version))
        assert spare.read_whole(f"{d}/a.json") == doc(version, 3000 // version)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o600
    names = sorted(os.listdir(d))
    assert names == ["a.json"] if mode == "rename" else names == [".a.json.spare", "a.json"]


def test_a_reader_on_the_spare_makes_the_writer_fall_back(tmp_path: Path) -> None:
    """A reader that opened the document before an exchange holds the (now spare) inode:
    the writer does not touch it; the file store then replaces the document by a new file."""
    d = str(tmp_path)
    sp = f"{d}/.a.json.spare"
    spare.write_via_spare(d, "a.json", sp, doc(1))
    spare.write_via_spare(d, "a.json", sp, doc(2))
    reader = os.open(sp, os.O_RDONLY)  # the inode that held version 1
    try:
        fcntl.flock(reader, fcntl.LOCK_SH)
        assert not spare.write_via_spare(d, "a.json", sp, doc(3))
        assert os.pread(reader, 100, 0) == doc(1)  # untouched
        assert spare.read_whole(f"{d}/a.json") == doc(2)
    finally:
        os.close(reader)


def test_a_reader_reopens_an_inode_a_writer_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock refused means the inode opened is being rewritten as a spare: read the
    name again, which by then is the other inode."""
    path = tmp_path / "a.json"
    path.write_bytes(doc(1))
    real = fcntl.flock
    refused = []

    def flock(fd: int, op: int) -> None:
        if op & fcntl.LOCK_SH and not refused:
            refused.append(fd)
            new = tmp_path / "new"
            new.write_bytes(doc(2))
            os.replace(new, path)  # the writer's exchange, done meanwhile
            raise BlockingIOError
        real(fd, op)

    monkeypatch.setattr(spare.fcntl, "flock", flock)
    assert spare.read_whole(str(path)) == doc(2)
    assert refused


def test_readers_always_see_a_whole_document(tmp_path: Path, mode: str) -> None:
    """One writer (as under the account's lock) and readers racing it: every read parses
    and each reader's versions never go back (without the readers' lock, this fails)."""
    d = str(tmp_path)
    sp = f"{d}/.a.json.spare"
    spare.write_via_spare(d, "a.json", sp, doc(0, 5000))
    writes = 1500
    done = threading.Event()
    problems: list[str] = []

    def read() -> None:
        last = -1
        while not done.is_set():
            data = spare.read_whole(f"{d}/a.json")
            try:
                version = json.loads(data)["version"]
            except ValueError:
                problems.append(f"torn read: {data[:40]!r}...{data[-40:]!r}")
                return
            if version < last:
                problems.append(f"went back from {last} to {version}")
            last = version

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for version in range(1, writes):
            # Lengths vary across pages, so a torn read would show.
            if not spare.write_via_spare(d, "a.json", sp, doc(version, (version * 7919) % 9000)):
                tmp = f"{d}/.tmp"
                with open(tmp, "wb") as handle:
                    handle.write(doc(version, 10))
                os.replace(tmp, f"{d}/a.json")
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert problems == []


def test_the_store_drops_a_runs_spare_with_its_lease_and_prune_its_leftovers(
    tmp_path: Path,
) -> None:
    fs = FileStore(tmp_path, clock=lambda: NOW)
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    for n in range(3):
        lease = fs.save(lease, run={"run_id": "r1", "n": n}, account={"account": "svc_a", "n": n})
        lease = fs.save(lease)  # a barrier, as before every side effect
    assert (tmp_path / "runs" / ".r1.json.spare").exists()
    assert [r["run_id"] for r in fs.list_runs()] == ["r1"]  # the spare is no run
    fs.release_lease(lease)
    assert sorted(os.listdir(tmp_path / "runs")) == ["r1.json"]
    assert fs.load_run("r1") == {"schema": 1, "run_id": "r1", "n": 2}
    assert fs.load_account("svc_a") == {"schema": 1, "account": "svc_a", "n": 2}
    assert fs.read_lease("svc_a").released  # type: ignore[union-attr]

    # A run killed before its release leaves its spare; deleting the run removes it.
    lease = fs.acquire_lease("svc_a", owner="t", ttl=TTL)
    for n in range(2):
        lease = fs.save(lease, run={"run_id": "r2", "n": n})
        lease = fs.save(lease)
    assert (tmp_path / "runs" / ".r2.json.spare").exists()
    fs.delete_runs(["r1", "r2"])
    assert os.listdir(tmp_path / "runs") == []


def test_a_document_is_rewritten_in_place_only_once_the_journal_would_restore_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss may persist an exchange before the bytes rewritten into that inode.
    Harmless once a durable journal record of the document exists (the replay rewrites the
    file from it); before that — the document's first write since this process opened the
    journal, or since a compaction — the new version must go to a new file (temp + rename:
    old or new after a crash), never into an inode that already exists."""
    store = FileStore(tmp_path, clock=lambda: NOW)
    lease = store.acquire_lease("svc_a", owner="t", ttl=TTL)
    for n in range(3):
        lease = store.save(lease, account={"account": "svc_a", "n": n})
        lease = store.save(lease)
    account = tmp_path / "accounts" / "svc_a.json"
    spare_path = tmp_path / "accounts" / ".svc_a.json.spare"
    assert spare_path.exists()  # rewritten in place by now
    store.release_lease(lease)
    assert store._journal is not None
    store._journal.close()  # gone, as a finished process is (it held the journal open)

    def held() -> list[tuple[int, bytes]]:
        """The inodes that hold the document and its spare now, open, with their bytes."""
        out = []
        for path in (account, spare_path):
            fd = os.open(path, os.O_RDONLY)
            out.append((fd, os.pread(fd, 1 << 16, 0)))
        return out

    def untouched(old: list[tuple[int, bytes]]) -> bool:
        same = all(os.pread(fd, 1 << 16, 0) == data for fd, data in old)
        for fd, _ in old:
            os.close(fd)
        return same

    # A new process: its journal has synced nothing of this document yet.
    again = FileStore(tmp_path, clock=lambda: NOW)
    lease = again.acquire_lease("svc_a", owner="t2", ttl=TTL)
    old = held()
    lease = again.save(lease, account={"account": "svc_a", "n": 10})
    lease = again.save(lease, account={"account": "svc_a", "n": 11})  # still no barrier
    assert untouched(old), "a write before the barrier went into an existing inode"
    lease = again.save(lease)  # the barrier: the journal now restores this document
    old = held()
    lease = again.save(lease, account={"account": "svc_a", "n": 12})
    assert not untouched(old)  # through the spare from here on (and the test can tell)
    assert again.load_account("svc_a") == {"schema": 1, "account": "svc_a", "n": 12}

    # A compaction drops the records (after syncing the files): uncovered again.
    journal = again._journal
    assert journal is not None and journal._fd is not None
    monkeypatch.setattr(journal_module, "COMPACT_AT", 0)
    journal._compact(journal._fd)
    monkeypatch.undo()
    assert journal.path.stat().st_size == 0
    old = held()
    lease = again.save(lease, account={"account": "svc_a", "n": 13})
    assert untouched(old)
    again.release_lease(lease)
