"""The file backend keeps a consumer file's owner, group and mode, refuses what it cannot
keep, applies its symlink policy, keeps its backup private and keys fingerprints with the
state store's secret key. Real files in tmp_path; chown needs root (else those skip)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from backends.base import TokenRecord
from backends.file import FileBackend, FileConfig
from rotator.errors import BackendError
from rotator.secret import Secret

OLD_BYTES = b'{"motherduck_token": "old-secret-hardening", "token_id": "tok-old"}\n'
RUN = "run-hard-1"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")


def record(n: int = 1) -> TokenRecord:
    return TokenRecord(Secret(f"new-secret-hardening-{n}"), f"tok-{n}", f"rotator-svc-{n}")


def make(tmp_path: Path, name: str = "secrets/md.json", **extra: object) -> FileBackend:
    cfg = FileConfig.model_validate({"type": "file", "path": name, **extra})
    return FileBackend.from_config(cfg, account="svc", base_dir=tmp_path)


def seed(path: Path, mode: int = 0o640, owner: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(OLD_BYTES)
    if owner is not None:
        os.chown(path, *owner)
    path.chmod(mode)


def facts(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


class TestOwnership:
    @as_root
    def test_promote_keeps_owner_group_and_mode(self, tmp_path: Path) -> None:
        """root:consumers 0640 stays root:consumers 0640 (here uid 4242, gid 4343)."""
        backend = make(tmp_path)
        seed(backend.path, 0o640, (4242, 4343))
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        assert facts(backend.path) == (4242, 4343, 0o640)
        assert json.loads(backend.path.read_text())["token_id"] == "tok-1"

    @as_root
    def test_rollback_restores_owner_group_and_mode(self, tmp_path: Path) -> None:
        """After promote and rollback the old bytes are back with their owner, group and mode."""
        backend = make(tmp_path)
        seed(backend.path, 0o644, (4242, 4343))
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        backend.rollback(receipt, run_id=RUN)
        assert backend.path.read_bytes() == OLD_BYTES
        assert facts(backend.path) == (4242, 4343, 0o644)

    def test_backup_is_private_whatever_the_file_mode(self, tmp_path: Path) -> None:
        """The backup holding the old token is 0600 even when the file was 0644."""
        backend = make(tmp_path)
        seed(backend.path, 0o644)
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        assert stat.S_IMODE(backend.backup.stat().st_mode) == 0o600
        assert stat.S_IMODE(backend.path.stat().st_mode) == 0o644

    @as_root
    def test_refuses_when_the_group_cannot_be_kept(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the right to chown, stage fails with a clear error and nothing is live."""
        backend = make(tmp_path)
        seed(backend.path, 0o640, (os.geteuid(), os.getegid() + 4343))

        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "chown", denied)
        with pytest.raises(BackendError, match="owner and group") as info:
            backend.stage(record(), run_id=RUN)
        assert "\n" not in str(info.value)
        assert backend.path.read_bytes() == OLD_BYTES
        assert backend.read_current() is not None


class TestSymlinks:
    def test_a_symlink_is_refused_by_default(self, tmp_path: Path) -> None:
        """A link at `path` is not silently replaced by a file: every verb refuses it."""
        real = tmp_path / "real" / "md.json"
        seed(real)
        link = tmp_path / "secrets" / "md.json"
        link.parent.mkdir()
        link.symlink_to(real)
        backend = make(tmp_path)
        with pytest.raises(BackendError, match=r"symbolic link.*follow_symlinks"):
            backend.stage(record(), run_id=RUN)
        with pytest.raises(BackendError, match="symbolic link"):
            backend.read_current()
        assert link.is_symlink() and real.read_bytes() == OLD_BYTES
        assert not list(link.parent.glob("md.json.*"))

    def test_follow_symlinks_rotates_the_target(self, tmp_path: Path) -> None:
        """With follow_symlinks the target file is rotated and the link stays a link."""
        real = tmp_path / "real" / "md.json"
        seed(real, 0o640)
        link = tmp_path / "secrets" / "md.json"
        link.parent.mkdir()
        link.symlink_to(real)
        backend = make(tmp_path, follow_symlinks=True)
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        assert link.is_symlink()
        assert json.loads(link.read_text())["token_id"] == "tok-1"
        assert stat.S_IMODE(real.stat().st_mode) == 0o640
        assert (real.parent / "md.json.rotator.json").exists()
        assert backend.label == f"file:{link}"


class TestFingerprintKey:
    def test_sidecar_fingerprint_needs_the_store_key(self, tmp_path: Path) -> None:
        """Keyed with the store's key, the sidecar cannot be matched with the run id alone."""
        key = bytes(range(32))
        backend = make(tmp_path)
        backend.use_fingerprint_key(lambda: key)
        receipt = backend.stage(record(), run_id=RUN)
        backend.promote(receipt, run_id=RUN)
        doc = json.loads(backend.sidecar.read_text())
        by_run_id = record().token.fingerprint(RUN.encode())
        assert doc["run"]["fingerprint"] != by_run_id
        assert backend.read_staged(RUN) is not None
        keyless = make(tmp_path)
        assert keyless.read_staged(RUN) is None  # without the key nothing matches
        other = make(tmp_path)
        other.use_fingerprint_key(lambda: bytes(32))
        assert other.read_staged(RUN) is None
