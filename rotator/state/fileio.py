"""The file state store's small-file plumbing: one account's file names, reading a small
file in one call, and publishing a file exactly once (rotator/state/file.py uses them)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from rotator.state.lease import Lease

__all__ = ["AccountFiles", "publish_once", "read_file"]


def publish_once(path: Path, data: bytes) -> bool:
    """Create `path` holding `data` (0600) unless it exists; False when it already did.

    The content is written and fsynced under a temporary name and then hard-linked into
    place, so a concurrent reader (another thread or process starting a run) sees either
    no file or the whole key, never an empty one that it would have to refuse.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read_file(path: str | Path) -> bytes:
    """A small file's bytes: open, read until EOF, close (no stat, no buffer objects).

    A read shorter than asked is the end of a regular file: no second read to see EOF.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.read(fd, 65536)
        if len(chunk) < 65536:
            return chunk
        chunks = [chunk]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class AccountFiles:
    """One account's file names, built once per store (a rotation saves some 20 times),
    and the lease as last read or written, with the bytes it was parsed from."""

    __slots__ = ("account", "account_rel", "lease", "lease_path", "lease_rel", "lock")

    def __init__(self, root: str, account: str) -> None:
        name = f"{account.lower()}.json"
        self.account_rel = f"accounts/{name}"
        self.account = f"{root}/{self.account_rel}"
        self.lease_rel = f"leases/{name}"
        self.lease_path = f"{root}/{self.lease_rel}"
        self.lock = f"{root}/leases/{account.lower()}.lock"
        self.lease: tuple[bytes, Lease | None] | None = None
