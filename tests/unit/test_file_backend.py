"""The `file` backend on a real filesystem (tmp_path): every verb, crash points, consumers."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from backends.base import TokenRecord
from backends.file import FileBackend, FileConfig
from rotator.errors import BackendConflict, BackendError
from rotator.secret import Secret
from rotator.util import fsutil

OLD_BYTES = b'{"motherduck_token": "old-secret", "token_id": "tok-old"}  \n\n'
RUN = "run-1111"


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after the injected step runs."""


def record(n: int = 1) -> TokenRecord:
    return TokenRecord(Secret(f"new-secret-{n}"), f"tok-{n}", f"rotator-svc-{n}", "2026-11-23")


def make(tmp_path: Path, fmt: str = "json", name: str = "secrets/md.json") -> FileBackend:
    return FileBackend.from_config(
        FileConfig(type="file", path=name, format=fmt),  # type: ignore[arg-type]
        account="svc",
        base_dir=tmp_path,
    )


def seed(backend: FileBackend, data: bytes = OLD_BYTES, mode: int = 0o600) -> None:
    backend.path.parent.mkdir(parents=True, exist_ok=True)
    backend.path.write_bytes(data)
    backend.path.chmod(mode)


def crash_at(backend: FileBackend, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def reached(name: str) -> None:
        if name == step:
            raise Crash(step)

    monkeypatch.setattr(backend, "_reached", reached)


def leftovers(backend: FileBackend) -> list[str]:
    return sorted(p.name for p in backend.path.parent.iterdir() if p != backend.sidecar)


class TestConfigAndReads:
    def test_relative_path_resolves_against_base_dir(self, tmp_path: Path) -> None:
        """A relative `path` is taken from the config file's directory and named in the label."""
        backend = make(tmp_path)
        assert backend.path == tmp_path / "secrets" / "md.json"
        assert backend.label == f"file:{tmp_path}/secrets/md.json"
        assert backend.describe() == {"type": "file", "path": str(backend.path), "format": "json"}

    def test_unknown_config_fields_are_refused(self) -> None:
        """A typo in the table is a validation error, not silently ignored."""
        with pytest.raises(ValueError, match="pathh"):
            FileConfig.model_validate({"type": "file", "path": "x", "pathh": "y"})

    def test_read_current_absent_and_json(self, tmp_path: Path) -> None:
        """No file reads as None; a JSON file yields its token and id."""
        backend = make(tmp_path)
        assert backend.read_current() is None
        seed(backend)
        current = backend.read_current()
        assert current is not None
        assert current.token.reveal() == "old-secret" and current.token_id == "tok-old"

    def test_read_current_raw_hand_written(self, tmp_path: Path) -> None:
        """A bare token written by hand reads back with no token id."""
        backend = make(tmp_path, fmt="raw")
        seed(backend, b"bare-token\n")
        current = backend.read_current()
        assert current is not None
        assert current.token.reveal() == "bare-token" and current.token_id is None

    def test_directory_in_the_way(self, tmp_path: Path) -> None:
        """A directory where the file should be is a one-line BackendError naming the path."""
        backend = make(tmp_path)
        backend.path.mkdir(parents=True)
        with pytest.raises(BackendError, match="directory is in the way") as info:
            backend.read_current()
        assert str(backend.path) in str(info.value) and "\n" not in str(info.value)

    def test_parent_is_a_file(self, tmp_path: Path) -> None:
        """A file where the parent directory should be fails staging with a clear message."""
        (tmp_path / "secrets").write_text("not a dir")
        with pytest.raises(BackendError, match="failed"):
            make(tmp_path).stage(record(), run_id=RUN)

    def test_permission_denied(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unreadable file is a BackendError that says to check permissions."""
        backend = make(tmp_path)
        seed(backend)

        def denied(path: Path | str) -> bytes:
            raise PermissionError(13, "Permission denied", str(path))

        # As root (CI) chmod 000 would not stop the read: the read itself is made to fail.
        monkeypatch.setattr(fsutil, "read_bytes", denied)
        with pytest.raises(BackendError, match="permissions"):
            backend.read_current()


class TestStagePromote:
    def test_round_trip_json(self, tmp_path: Path) -> None:
        """stage writes only `.pending` (0600); promote makes it what consumers read."""
        backend = make(tmp_path)
        seed(backend)
        receipt = backend.stage(record(), run_id=RUN)
        assert receipt == {"path": str(backend.path), "pending": str(backend.pending)}
        assert backend.path.read_bytes() == OLD_BYTES
        assert backend.pending.stat().st_mode & 0o777 == 0o600
        staged = backend.read_staged(RUN)
        assert staged is not None and staged.token.reveal() == "new-secret-1"
        assert staged.run_id == RUN and staged.token_id == "tok-1"
        backend.promote(receipt, run_id=RUN)
        doc = json.loads(backend.path.read_text())
        assert doc["motherduck_token"] == "new-secret-1" and doc["token_id"] == "tok-1"
        assert doc["token_name"] == "rotator-svc-1"
        assert not backend.pending.exists()
        current = backend.read_current()
        assert current is not None and current.token_id == "tok-1" and current.run_id == RUN
        assert backend.read_staged(RUN) == current

    def test_round_trip_raw_keeps_id_in_sidecar(self, tmp_path: Path) -> None:
        """A raw file holds the bare token; its id comes from the sidecar, which holds no secret."""
        backend = make(tmp_path, fmt="raw")
        backend.promote(backend.stage(record(), run_id=RUN), run_id=RUN)
        assert backend.path.read_bytes() == b"new-secret-1"
        current = backend.read_current()
        assert current is not None and current.token_id == "tok-1"
        assert current.token_name == "rotator-svc-1"
        assert b"new-secret" not in backend.sidecar.read_bytes()
        assert backend.sidecar.stat().st_mode & 0o777 == 0o600

    def test_new_dirs_are_private(self, tmp_path: Path) -> None:
        """Missing parent directories are created 0700, the files 0600."""
        backend = make(tmp_path, name="a/b/md.json")
        backend.promote(backend.stage(record(), run_id=RUN), run_id=RUN)
        for directory in (tmp_path / "a", tmp_path / "a" / "b"):
            assert directory.stat().st_mode & 0o777 == 0o700
        assert backend.path.stat().st_mode & 0o777 == 0o600

    def test_promote_keeps_the_consumers_file_mode(self, tmp_path: Path) -> None:
        """A group-readable file stays group-readable, so consumers keep their access."""
        backend = make(tmp_path)
        seed(backend, mode=0o640)
        backend.promote(backend.stage(record(), run_id=RUN), run_id=RUN)
        assert backend.path.stat().st_mode & 0o777 == 0o640

    def test_stage_replay_writes_nothing(self, tmp_path: Path) -> None:
        """Staging the same token for the same run again leaves the pending file untouched."""
        backend = make(tmp_path)
        seed(backend)
        first = backend.stage(record(), run_id=RUN)
        inode = backend.pending.stat().st_ino
        assert backend.stage(record(), run_id=RUN) == first
        assert backend.pending.stat().st_ino == inode
        backend.promote(first, run_id=RUN)
        inode = backend.path.stat().st_ino
        assert backend.stage(record(), run_id=RUN) == first
        assert backend.path.stat().st_ino == inode and not backend.pending.exists()

    def test_promote_replay_is_a_no_op(self, tmp_path: Path) -> None:
        """Promoting twice leaves the new value live and the backup intact for rollback."""
        backend = make(tmp_path)
        seed(backend)
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        backend.rollback(receipt, run_id=RUN)
        assert backend.path.read_bytes() == OLD_BYTES

    def test_promote_without_stage_fails(self, tmp_path: Path) -> None:
        """Promoting a run that staged nothing is an error, not a silent success."""
        with pytest.raises(BackendError, match="nothing staged"):
            make(tmp_path).promote({}, run_id=RUN)


class TestConflicts:
    def test_foreign_pending_conflicts(self, tmp_path: Path) -> None:
        """Another run's pending file blocks staging; the message names it and how to clear it."""
        backend = make(tmp_path)
        seed(backend)
        backend.stage(record(1), run_id="run-other")
        with pytest.raises(BackendConflict) as info:
            backend.stage(record(2), run_id=RUN)
        message = str(info.value)
        assert str(backend.pending) in message and "run-other" in message
        assert "new-secret" not in message
        staged = backend.read_staged("run-other")
        assert staged is not None and staged.token.reveal() == "new-secret-1"

    def test_hand_made_pending_conflicts(self, tmp_path: Path) -> None:
        """A `.pending` file no run wrote is not overwritten."""
        backend = make(tmp_path)
        seed(backend)
        backend.pending.write_text("someone else")
        with pytest.raises(BackendConflict, match="no rotator run staged it"):
            backend.stage(record(), run_id=RUN)
        assert backend.pending.read_text() == "someone else"

    def test_next_run_after_a_finished_one(self, tmp_path: Path) -> None:
        """A later run stages over a promoted run and clears its backup, so that run cannot roll back."""
        backend = make(tmp_path)
        seed(backend)
        backend.promote(backend.stage(record(1), run_id="run-a"), run_id="run-a")
        receipt = backend.stage(record(2), run_id="run-b")
        # run-a's backup (the old bytes) is gone; run-b's holds run-a's value.
        assert backend.backup.read_bytes() == backend.path.read_bytes() != OLD_BYTES
        backend.promote(receipt, run_id="run-b")
        backend.rollback(receipt, run_id="run-b")
        restored = backend.read_current()
        assert restored is not None and restored.token.reveal() == "new-secret-1"
        assert restored.token_id == "tok-1" and restored.run_id == "run-a"
        with pytest.raises(BackendConflict, match=r"restore .* by hand"):
            backend.rollback(None, run_id="run-a")  # its backup went with run-b's stage
        assert backend.read_current() == restored


class TestRollback:
    def test_after_promote_restores_bytes_and_mode(self, tmp_path: Path) -> None:
        """Rollback puts back the old file byte-for-byte, with its mode, and cleans up."""
        backend = make(tmp_path)
        seed(backend, mode=0o640)
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        backend.rollback(receipt, run_id=RUN)
        assert backend.path.read_bytes() == OLD_BYTES
        assert backend.path.stat().st_mode & 0o777 == 0o640
        assert leftovers(backend) == ["md.json"]
        assert backend.read_staged(RUN) is None
        backend.rollback(receipt, run_id=RUN)
        assert backend.path.read_bytes() == OLD_BYTES

    def test_before_promote_removes_pending(self, tmp_path: Path) -> None:
        """Rollback of a staged-only run deletes `.pending` and leaves the file alone."""
        backend = make(tmp_path)
        seed(backend)
        backend.stage(record(), run_id=RUN)
        backend.rollback(None, run_id=RUN)
        assert backend.path.read_bytes() == OLD_BYTES and leftovers(backend) == ["md.json"]

    def test_no_file_before_means_no_file_after(self, tmp_path: Path) -> None:
        """When there was no file before the run, rollback removes the one it created."""
        backend = make(tmp_path)
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        backend.rollback(receipt, run_id=RUN)
        assert not backend.path.exists() and backend.read_current() is None

    def test_unknown_run_is_a_no_op(self, tmp_path: Path) -> None:
        """Rolling back a run that never wrote anything touches nothing."""
        backend = make(tmp_path)
        seed(backend)
        backend.stage(record(), run_id="run-other")
        backend.rollback(None, run_id=RUN)
        assert backend.read_staged("run-other") is not None
        assert backend.path.read_bytes() == OLD_BYTES

    def test_raw_rollback_restores_previous_token_id(self, tmp_path: Path) -> None:
        """After rolling back a raw file the previous run's token id is reported again."""
        backend = make(tmp_path, fmt="raw")
        backend.promote(backend.stage(record(1), run_id="run-a"), run_id="run-a")
        receipt = backend.stage(record(2), run_id="run-b")
        backend.promote(receipt, run_id="run-b")
        backend.rollback(receipt, run_id="run-b")
        current = backend.read_current()
        assert current is not None and current.token_id == "tok-1"


STAGE_STEPS = ["marker_written", "pending_written"]
PROMOTE_STEPS = ["backup_written", "renamed"]


def killed_in_stage(tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch) -> FileBackend:
    """Seed the file, run stage until `step` and die there; the backend comes back with
    its crash hook removed, like the next process would find it."""
    backend = make(tmp_path)
    seed(backend)
    crash_at(backend, step, monkeypatch)
    with pytest.raises(Crash):
        backend.stage(record(), run_id=RUN)
    monkeypatch.undo()
    return backend


class TestCrashPoints:
    @pytest.mark.parametrize("step", STAGE_STEPS)
    def test_crash_in_stage_then_resume(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
    ) -> None:
        """A kill inside stage leaves the live file intact; stage again then promote works."""
        backend = killed_in_stage(tmp_path, step, monkeypatch)
        assert backend.path.read_bytes() == OLD_BYTES
        staged = backend.read_staged(RUN)
        assert (staged is not None) == (step == "pending_written")
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        current = backend.read_current()
        assert current is not None and current.token.reveal() == "new-secret-1"

    @pytest.mark.parametrize("step", STAGE_STEPS)
    def test_crash_in_stage_then_rollback(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
    ) -> None:
        """rollback(None) after a kill inside stage finds the run by its marker and cleans up."""
        backend = killed_in_stage(tmp_path, step, monkeypatch)
        backend.rollback(None, run_id=RUN)
        assert backend.path.read_bytes() == OLD_BYTES and leftovers(backend) == ["md.json"]
        backend.stage(record(2), run_id="run-next")  # nothing left that blocks the next run

    @pytest.mark.parametrize("had_file", [True, False])
    @pytest.mark.parametrize("step", PROMOTE_STEPS)
    def test_crash_in_promote(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, had_file: bool
    ) -> None:
        """After a kill inside promote, read_staged finds the value, and both promote and
        rollback(None) finish correctly."""
        for finish in ("promote", "rollback"):
            backend = make(tmp_path, name=f"{finish}-{step}-{had_file}/md.json")
            if had_file:
                seed(backend)
            receipt = backend.stage(record(), run_id=RUN)
            crash_at(backend, step, monkeypatch)
            with pytest.raises(Crash):
                backend.promote(receipt, run_id=RUN)
            monkeypatch.undo()
            staged = backend.read_staged(RUN)
            assert staged is not None and staged.token.reveal() == "new-secret-1"
            if finish == "promote":
                backend.promote(receipt, run_id=RUN)
                current = backend.read_current()
                assert current is not None and current.token.reveal() == "new-secret-1"
            else:
                backend.rollback(None, run_id=RUN)
                if had_file:
                    assert backend.path.read_bytes() == OLD_BYTES
                else:
                    assert not backend.path.exists()
                assert leftovers(backend) == (["md.json"] if had_file else [])

    def test_crash_in_rollback_then_replay(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A kill right after the restore rename is finished by replaying rollback."""
        backend = make(tmp_path, fmt="raw")
        backend.promote(backend.stage(record(1), run_id="run-a"), run_id="run-a")
        before = backend.path.read_bytes()
        receipt = backend.stage(record(2), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        crash_at(backend, "restored", monkeypatch)
        with pytest.raises(Crash):
            backend.rollback(receipt, run_id=RUN)
        monkeypatch.undo()
        assert backend.path.read_bytes() == before
        backend.rollback(None, run_id=RUN)
        current = backend.read_current()
        assert current is not None and current.token_id == "tok-1"
        assert leftovers(backend) == ["md.json"]

    def test_failed_write_keeps_old_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A rename that fails (disk full, EXDEV...) surfaces as BackendError; the file is intact."""
        backend = make(tmp_path)
        seed(backend)
        receipt = backend.stage(record(), run_id=RUN)
        real_replace = os.replace

        def failing(src: object, dst: object) -> None:
            if str(dst) == str(backend.path):
                raise OSError(28, "No space left on device", str(dst))
            real_replace(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "replace", failing)
        with pytest.raises(BackendError, match="disk is full"):
            backend.promote(receipt, run_id=RUN)
        monkeypatch.undo()
        assert backend.path.read_bytes() == OLD_BYTES
        backend.promote(receipt, run_id=RUN)
        assert backend.read_current() is not None


class TestConsumerView:
    def test_consumer_only_ever_sees_old_or_new(self, tmp_path: Path) -> None:
        """A reader polling the file during stage/promote/rollback cycles sees only whole values."""
        backend = make(tmp_path)
        seed(backend, b'{"motherduck_token": "old-secret", "token_id": "tok-old"}\n')
        seen: set[str] = set()
        errors: list[str] = []
        stop = threading.Event()

        def consume() -> None:
            while not stop.is_set():
                try:
                    text = backend.path.read_text()
                except FileNotFoundError:
                    errors.append("file missing")
                    continue
                try:
                    seen.add(json.loads(text)["motherduck_token"])
                except (ValueError, KeyError):
                    errors.append(f"torn read of {len(text)} chars")

        reader = threading.Thread(target=consume)
        reader.start()
        try:
            for i in range(40):
                run = f"run-{i}"
                receipt = backend.stage(record(i), run_id=run)
                backend.promote(receipt, run_id=run)
                backend.rollback(receipt, run_id=run)
        finally:
            stop.set()
            reader.join()
        assert errors == []
        assert seen <= {"old-secret"} | {f"new-secret-{i}" for i in range(40)}
        assert "old-secret" in seen
        assert backend.path.read_text().startswith('{"motherduck_token": "old-secret"')
