"""The file backend's last promote write is not directory-fsynced: a power loss can leave
the `promoting` sidecar behind a finished rename. It must read as `promoted`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rotator.errors import BackendConflict
from tests.unit.test_file_backend import OLD_BYTES, RUN, Crash, crash_at, make, record, seed


@pytest.mark.parametrize("had_file", [True, False])
def test_promoting_sidecar_after_the_rename_reads_as_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, had_file: bool
) -> None:
    backend = make(tmp_path)
    if had_file:
        seed(backend)
    receipt = backend.stage(record(1), run_id=RUN)
    crash_at(backend, "renamed", monkeypatch)
    with pytest.raises(Crash):
        backend.promote(receipt, run_id=RUN)
    monkeypatch.undo()
    # What the disk holds if the final sidecar write was lost: `promoting`, no pending.
    assert json.loads(backend.sidecar.read_text())["run"]["state"] == "promoting"
    assert not backend.pending.exists()

    current = backend.read_current()
    assert current is not None and current.token_id == "tok-1"
    # The next run stages without a conflict, and can still roll back to this token.
    receipt2 = backend.stage(record(2), run_id="run-2222")
    backend.promote(receipt2, run_id="run-2222")
    backend.rollback(None, run_id="run-2222")
    current = backend.read_current()
    assert current is not None and current.token.reveal() == "new-secret-1"
    assert current.token_id == "tok-1"


def test_promoting_sidecar_before_the_rename_still_blocks_a_foreign_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the pending file still there, `promoting` means what it says."""
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
