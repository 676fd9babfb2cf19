"""Durable file writes: a reader sees the old bytes or the new bytes, never a mix.

Temp file in the same directory, fsync, `os.replace`, fsync the directory, mode 0600 —
so a crash at any instant leaves either version on disk, and nobody else can read it.
And whole-file reads in the fewest system calls (`read_bytes`, `read_fd`), which a
fleet's threads pay for in GIL hand-offs as well.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from pathlib import Path

__all__ = [
    "atomic_write_bytes",
    "ensure_private_dir",
    "fsync_dir",
    "read_bytes",
    "read_fd",
    "replace_bytes",
]

_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
_temp_serial = itertools.count()  # `next` on it is atomic under the GIL: unique per process


def _create_temp(directory: Path | str, name: str) -> tuple[int, str]:
    """A new file `.<name>.<pid>-<n>.tmp` in `directory`, mode 0600, opened exclusively.

    What `tempfile.mkstemp` gives (same flags and mode), without its random-name machinery
    (a quarter of a write's CPU): the pid and a per-process serial make the name unique among
    live writers; a leftover of a crashed process that had the same pid is stepped over.
    """
    pid = os.getpid()
    while True:
        tmp = os.path.join(directory, f".{name}.{pid}-{next(_temp_serial)}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue


def ensure_private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700 (existing ones are left as they are)."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (rename, unlink) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    durable: bool = True,
    make_dirs: bool = True,
    sync_dir: bool = True,
) -> None:
    """Replace `path` with `data` atomically; `durable=False` skips the fsyncs (tests,
    benchmarks, and the file state store, whose journal makes the write durable).

    `make_dirs=False`: the caller knows the directory exists (saves a stat per write).
    `sync_dir=False` (with `durable`): the content is fsynced before the rename, so a crash
    leaves the old or the new bytes, but the rename itself is durable only once the caller
    fsyncs the directory (one fsync for several files of one directory).
    Raises OSError from the filesystem; the previous content is intact when it does.
    """
    if make_dirs:
        ensure_private_dir(path.parent)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        try:
            if mode != 0o600:  # created 0600 already
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable and sync_dir:
        fsync_dir(path.parent)


def replace_bytes(directory: str, name: str, data: bytes) -> None:
    """`atomic_write_bytes(Path(directory) / name, data, durable=False, make_dirs=False)` on
    plain strings: the file state store's per-checkpoint write, where building and
    converting `Path` objects was a fifth of the CPU (its journal makes the write durable).
    """
    fd, tmp = _create_temp(directory, name)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_bytes(path: Path | str) -> bytes:
    """The whole file, as `Path.read_bytes` (and its exceptions) in 4 system calls, not 9.

    `Path.read_bytes` goes through a buffered file object: two fstats, a TCGETS ioctl (is
    it a terminal?) and two lseeks around the reads. A rotation reads the file backend's
    files some 25 times; in a fleet every system call is also a GIL release and
    re-acquire among the worker's threads. Read until an empty read, not a short one: the
    path is a user's, and may be a pipe.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_fd(fd: int) -> bytes:
    """Everything from `fd`'s offset to the end of a regular file (rotator's own)."""
    # A read shorter than asked is the end of a regular file: no second read to see EOF.
    chunk = os.read(fd, 65536)
    if len(chunk) < 65536:
        return chunk
    chunks = [chunk]
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


_SPECIAL = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(mode: int) -> str | None:
    """What a file of `mode` is when a rename over it would destroy more than a file: a
    device, a FIFO or a socket (None for a regular file, a directory or a link)."""
    return next((name for test, name in _SPECIAL if test(mode)), None)
