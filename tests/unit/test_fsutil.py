"""rotator.util.fsutil.atomic_write_bytes: new bytes in place, private, no temp file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rotator.util import fsutil
from rotator.util.fsutil import atomic_write_bytes


def test_replaces_content_with_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "doc.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two", mode=0o644)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # fchmod: the umask does not apply
    atomic_write_bytes(target, b"three")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["doc.json"]


def test_steps_over_a_leftover_temp_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crashed writer with the same pid left the next temp name behind: not reused."""
    target = tmp_path / "doc.json"
    serial = next(fsutil._temp_serial) + 1
    leftover = tmp_path / f".doc.json.{os.getpid()}-{serial}.tmp"
    leftover.write_bytes(b"stale")
    atomic_write_bytes(target, b"fresh", durable=False)
    assert target.read_bytes() == b"fresh"
    assert leftover.read_bytes() == b"stale"


def test_failure_keeps_the_old_content_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "doc.json"
    atomic_write_bytes(target, b"old")

    def broken(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", broken)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]
