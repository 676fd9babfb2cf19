"""rotator.util.fsutil.read_bytes: Path.read_bytes's answers and errors, fewer system calls."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from rotator.util.fsutil import read_bytes


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 300_000])
def test_reads_the_whole_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    data = os.urandom(size)
    path.write_bytes(data)
    assert read_bytes(path) == data == path.read_bytes()
    assert read_bytes(str(path)) == data


def test_errors_are_path_read_bytes_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "missing")
    with pytest.raises(IsADirectoryError):
        read_bytes(tmp_path)


def test_a_pipe_is_read_to_its_end_not_to_its_first_short_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    parts = [b"first part\n", b"second part\n"]
    first_read = threading.Event()

    def writer() -> None:
        with open(fifo, "wb", buffering=0) as out:
            out.write(parts[0])
            first_read.wait(timeout=5)  # the reader has the first part before the second
            out.write(parts[1])

    thread = threading.Thread(target=writer)
    thread.start()
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        chunk = real_read(fd, n)
        first_read.set()
        return chunk

    monkeypatch.setattr(os, "read", read)
    try:
        assert read_bytes(fifo) == b"".join(parts)
    finally:
        first_read.set()
        thread.join(timeout=5)
