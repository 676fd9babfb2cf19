"""The file backend's promote after a stage that took the backup: no sidecar write before
the rename in the common case, and the final `promoted` write not directory-fsynced. A
marker of the run with its pending file gone and its value live must read as `promoted`,
roll back, and let the next run stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends._lease import LeaseGuard
from backends.file import FileBackend
from rotator.errors import BackendConflict, LeaseLost
from tests.unit.test_file_backend import OLD_BYTES, RUN, Crash, crash_at, make, record, seed


def on_disk_state(backend: FileBackend) -> str:
    return str(json.loads(backend.sidecar.read_text())["run"]["state"])


@pytest.mark.parametrize("crashed", [True, False])
@pytest.mark.parametrize("had_file", [True, False])
def test_a_staging_marker_behind_a_finished_rename_reads_as_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, had_file: bool, crashed: bool
) -> None:
    backend = make(tmp_path)
    if had_file:
        seed(backend)
    receipt = backend.stage(record(1), run_id=RUN)
    if crashed:
        crash_at(backend, "renamed", monkeypatch)
        with pytest.raises(Crash):
            backend.promote(receipt, run_id=RUN)
        monkeypatch.undo()
    else:
        backend.promote(receipt, run_id=RUN)
    # Killed right after the rename, the final write lost: the marker is what is left.
    assert on_disk_state(backend) == ("staging" if crashed else "promoted")
    assert not backend.pending.exists()

    current = backend.read_current()
    assert current is not None and current.token_id == "tok-1" and current.run_id == RUN
    staged = backend.read_staged(RUN)
    assert staged is not None and staged.token.reveal() == "new-secret-1"
    backend.promote(receipt, run_id=RUN)  # a replay changes nothing
    assert backend.read_current() == current
    # The next run stages without a conflict, and can still roll back to this token.
    receipt2 = backend.stage(record(2), run_id="run-2222")
    backend.promote(receipt2, run_id="run-2222")
    backend.rollback(None, run_id="run-2222")
    current = backend.read_current()
    assert current is not None and current.token.reveal() == "new-secret-1"
    assert current.token_id == "tok-1"


@pytest.mark.parametrize("had_file", [True, False])
def test_rollback_after_a_promote_that_used_the_stage_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, had_file: bool
) -> None:
    """Killed after the rename: the marker's `had_previous` decides between restoring the
    backup stage took (0600) and removing the file."""
    backend = make(tmp_path)
    if had_file:
        seed(backend, mode=0o640)
    receipt = backend.stage(record(1), run_id=RUN)
    if had_file:
        assert backend.backup.read_bytes() == OLD_BYTES
        assert backend.backup.stat().st_mode & 0o777 == 0o600
    else:
        assert not backend.backup.exists()
    crash_at(backend, "renamed", monkeypatch)
    with pytest.raises(Crash):
        backend.promote(receipt, run_id=RUN)
    monkeypatch.undo()
    assert on_disk_state(backend) == "staging"
    backend.rollback(receipt, run_id=RUN)
    if had_file:
        assert backend.path.read_bytes() == OLD_BYTES
        assert backend.path.stat().st_mode & 0o777 == 0o640
    else:
        assert not backend.path.exists()
    assert sorted(p.name for p in backend.path.parent.iterdir()) == (
        ["md.json", "md.json.rotator.json"] if had_file else ["md.json.rotator.json"]
    )


@pytest.mark.parametrize("appears", [True, False])
def test_a_file_that_appeared_or_went_between_stage_and_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, appears: bool
) -> None:
    """When `path` exists at promote but not at stage (or the other way), the marker's
    `had_previous` is wrong: promote writes `promoting` first, and a crash after the
    rename still rolls back to what was there at promote."""
    backend = make(tmp_path)
    if not appears:
        seed(backend)
    receipt = backend.stage(record(1), run_id=RUN)
    if appears:
        seed(backend)
    else:
        backend.path.unlink()
    crash_at(backend, "renamed", monkeypatch)
    with pytest.raises(Crash):
        backend.promote(receipt, run_id=RUN)
    monkeypatch.undo()
    assert on_disk_state(backend) == "promoting"
    current = backend.read_current()
    assert current is not None and current.token_id == "tok-1"
    backend.rollback(receipt, run_id=RUN)
    if appears:
        assert backend.path.read_bytes() == OLD_BYTES
    else:
        assert not backend.path.exists()


def test_a_file_changed_in_place_between_stage_and_promote(tmp_path: Path) -> None:
    """The backup stage took no longer matches `path`: promote takes it again (and writes
    `promoting`), so rollback restores what was there at promote."""
    backend = make(tmp_path)
    seed(backend)
    receipt = backend.stage(record(1), run_id=RUN)
    changed = b'{"motherduck_token": "edited-secret", "token_id": "tok-edit"}\n'
    backend.path.write_bytes(changed)
    backend.promote(receipt, run_id=RUN)
    backend.rollback(receipt, run_id=RUN)
    assert backend.path.read_bytes() == changed


def test_a_marker_before_the_rename_still_blocks_a_foreign_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the backup, before the rename: the pending file is still there, and
    another run's stage is refused."""
    backend = make(tmp_path)
    seed(backend)
    receipt = backend.stage(record(1), run_id=RUN)
    crash_at(backend, "backup_written", monkeypatch)
    with pytest.raises(Crash):
        backend.promote(receipt, run_id=RUN)
    monkeypatch.undo()
    assert backend.path.read_bytes() == OLD_BYTES
    with pytest.raises(BackendConflict):
        backend.stage(record(2), run_id="run-2222")
    backend.promote(receipt, run_id=RUN)  # the run itself finishes
    current = backend.read_current()
    assert current is not None and current.token_id == "tok-1"


def test_a_run_resumed_under_a_newer_lease_raises_the_fence_at_promote(tmp_path: Path) -> None:
    """Staged under fence 5, promoted by the same run resumed under fence 6: promote writes
    the sidecar (fence 6), so the stalled holder of fence 5 is refused by the file."""
    checks: list[str] = []
    backend = make(tmp_path)
    seed(backend)
    backend.bind_lease(LeaseGuard(5, checks.append))
    receipt = backend.stage(record(1), run_id=RUN)
    assert json.loads(backend.sidecar.read_text())["fence"] == 5
    resumed = make(tmp_path)
    resumed.bind_lease(LeaseGuard(6, checks.append))
    resumed.promote(receipt, run_id=RUN)
    assert json.loads(resumed.sidecar.read_text())["fence"] == 6
    with pytest.raises(LeaseLost):
        backend.rollback(receipt, run_id=RUN)
    current = resumed.read_current()
    assert current is not None and current.token_id == "tok-1"


def test_stage_and_promote_cost_seven_fsyncs(tmp_path: Path, syncs: list[str]) -> None:
    """Stage: marker (content, directory), backup and pending (content each, one directory
    fsync for both renames) = 5. Promote: the rename's directory, the final sidecar's
    content = 2. See docs/performance.md, section 6."""
    backend = make(tmp_path)
    seed(backend)
    receipt = backend.stage(record(1), run_id=RUN)
    directory = str(backend.path.parent)
    assert len(syncs) == 5 and syncs[1] == directory and syncs[4] == directory
    assert ".rotator-backup." in syncs[2] and ".pending." in syncs[3]
    backend.promote(receipt, run_id=RUN)
    assert len(syncs) == 7 and syncs[5] == directory and ".rotator.json." in syncs[6]


def test_a_replayed_stage_makes_the_killed_one_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncs: list[str]
) -> None:
    """Killed after the pending file was renamed, before the directory fsync: the replay
    writes nothing but fsyncs the directory, so promote can rely on the backup."""
    backend = make(tmp_path)
    seed(backend)
    crash_at(backend, "pending_written", monkeypatch)
    with pytest.raises(Crash):
        backend.stage(record(1), run_id=RUN)
    monkeypatch.setattr(backend, "_reached", lambda step: None)  # undo() would drop `syncs`
    syncs.clear()
    receipt = backend.stage(record(1), run_id=RUN)
    assert syncs == [str(backend.path.parent)]
    backend.promote(receipt, run_id=RUN)
    backend.rollback(receipt, run_id=RUN)
    assert backend.path.read_bytes() == OLD_BYTES
