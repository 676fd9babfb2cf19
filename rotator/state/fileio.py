"""The file state store's small-file plumbing: one account's file names and publishing a
file exactly once (rotator/state/file.py uses them; documents are read and rewritten by
rotator/state/spare.py)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from rotator.state.lease import Lease

__all__ = ["AccountFiles", "publish_once"]


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


class AccountFiles:
    """One account's file names, built once per store (a rotation saves some 20 times),
    and the lease as last read or written, with the bytes it was parsed from."""

    __slots__ = (
        "account",
        "account_rel",
        "account_spare",
        "lease",
        "lease_path",
        "lease_rel",
        "lease_spare",
        "lock",
        "run_spare",
    )

    def __init__(self, root: str, account: str) -> None:
        name = f"{account.lower()}.json"
        self.account_rel = f"accounts/{name}"
        self.account = f"{root}/{self.account_rel}"
        self.lease_rel = f"leases/{name}"
        self.lease_path = f"{root}/{self.lease_rel}"
        self.lock = f"{root}/leases/{account.lower()}.lock"
        self.lease: tuple[bytes, Lease | None] | None = None
        # The spare inodes these documents are rewritten through (rotator/state/spare.py):
        # the account record's and the lease's for good, the current run's until its lease
        # is released.
        self.account_spare = f"{root}/accounts/.{name}.spare"
        self.lease_spare = f"{root}/leases/.{name}.spare"
        self.run_spare: str | None = None
