"""How the `file` backend's files are read and written; `backends.file` says when.

`backends.file.FileBackend` runs the rotation protocol (what each verb writes, in which
order, and what a resumed run finds). This module is what it stands on:

The filesystem: how one path is read (`read_bytes`, `read_token`), how a new file gets
the live file's owner, group and mode (`match_target`), how the backup copy is written
(`write_backup`), how a symbolic link at the configured path is refused or followed
(`resolve_path`), and how an `OSError` becomes a one-line `BackendError`
(`translate_errors`). Durable writes are `rotator.util.fsutil`'s.

Owner and group: when `<path>` belongs to another user or group, the new file is given
them (root, CAP_CHOWN, or a group the rotator user is in); when that is not allowed,
`stage` refuses with a BackendError before anything is live, rather than leave consumers
locked out of a file whose old token is about to be revoked.

Symlinks: a symbolic link at `<path>` is refused (promote's rename would replace the link
with a plain file); with `follow_symlinks = true` the file it points to is rotated
instead, and the companion files live beside that file.

The sidecar `<path>.rotator.json`, which never holds a secret: values are named by an
HMAC fingerprint (keyed with the state store's secret key and the run id, see
`backends.base.value_fingerprint`). `Owner` is one value's writer, `Sidecar` the whole
document (`current`, the latest run's marker and its state); `load_sidecar` reads it,
including a lost final `promoted` write; `write_sidecar` writes it durably.

Fencing (I4): the sidecar carries `fence`, the highest lease fencing number any run wrote
it under. `check_fence` re-reads it and refuses (LeaseLost) when it is newer than the
run's own lease; `FileBackend` calls it before every sidecar and value write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends._lease import LeaseGuard, fence_of
from backends.base import decode_value, value_fingerprint
from rotator.errors import BackendError
from rotator.secret import Secret
from rotator.util import fsutil
from rotator.util.fsutil import atomic_write_bytes

__all__ = [
    "Owner",
    "Sidecar",
    "check_fence",
    "fingerprint",
    "load_sidecar",
    "match_target",
    "read_bytes",
    "read_token",
    "resolve_path",
    "translate_errors",
    "unlink",
    "write_backup",
    "write_sidecar",
]


def resolve_path(configured: Path, *, follow_symlinks: bool, label: str) -> Path:
    """Apply the symlink policy: refuse a link at `configured`, or follow it when configured;
    and refuse a path that is there but is not a regular file.

    Promote renames a file over `path`; over a symlink that would replace the link
    itself with a plain file, silently cutting off whatever else reads the target. Over a
    device, a FIFO or a socket it would replace that with a plain file (as root, even
    `/dev/null`), so those are refused before anything is written (a directory the rename
    itself refuses).
    One `lstat` either way: the one the symlink policy needs.
    """
    try:
        mode = os.lstat(configured).st_mode
    except OSError:
        # Absent (a first token: the file will be made), or a parent is not a directory:
        # the verb's own file operation says what is wrong (`translate_errors`).
        return configured
    if not stat.S_ISLNK(mode):
        _refuse_special(mode, configured, label)
        return configured
    if not follow_symlinks:
        raise BackendError(
            f"{label}: {configured} is a symbolic link, which rotating would "
            "replace with a plain file; point `path` at the real file, or set "
            "follow_symlinks = true to rotate the file it points to",
            backend=label,
        )
    target = Path(os.path.realpath(configured))
    with contextlib.suppress(OSError):
        _refuse_special(os.stat(target).st_mode, target, label)
    return target


def _refuse_special(mode: int, path: Path, label: str) -> None:
    # A directory is refused by the rename itself, with `translate_errors`' message.
    kind = fsutil.special_kind(mode)
    if kind is None:
        return
    raise BackendError(
        f"{label}: {path} is {kind}, which rotating would replace with a plain file; "
        "point `path` at a regular file (or where one should be made)",
        backend=label,
    )


def read_bytes(path: Path) -> bytes | None:
    try:
        return fsutil.read_bytes(path)
    except FileNotFoundError:
        return None


def read_token(path: Path) -> Secret | None:
    data = read_bytes(path)
    if data is None or not data.strip():
        return None
    return decode_value(data.decode()).token


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def write_backup(backup: Path, data: bytes | None) -> None:
    """`path`'s bytes to the backup (0600, content fsynced; the rename is not), or no
    backup when there is no file."""
    if data is not None:
        # 0600 whatever the file's mode: it holds the old token until the next run.
        atomic_write_bytes(backup, data, mode=0o600, sync_dir=False)
    else:
        unlink(backup)


def match_target(path: Path, target_path: Path, *, label: str, mode: bool = True) -> None:
    """Give `path` the owner, group (and mode) of `target_path`; refuse if we cannot.

    A replaced file that lost its group (root:consumers 0640 -> root:root 0640) locks
    its consumers out, and the old token is then revoked: better to stop here.
    """
    try:
        target = target_path.stat()
    except FileNotFoundError:
        return  # a first token: the file is ours, 0600
    mine = path.stat()
    uid = target.st_uid if target.st_uid != mine.st_uid else -1
    gid = target.st_gid if target.st_gid != mine.st_gid else -1
    if uid != -1 or gid != -1:
        try:
            os.chown(path, uid, gid)
        except PermissionError:
            raise BackendError(
                f"{label}: cannot give the new file {target_path}'s owner and group "
                f"(uid {target.st_uid}, gid {target.st_gid}); refusing rather than "
                "locking its readers out. Run rotator as that owner (or with CAP_CHOWN), "
                "or in that group",
                backend=label,
            ) from None
    if mode:
        os.chmod(path, stat.S_IMODE(target.st_mode))


@contextlib.contextmanager
def translate_errors(label: str, path: Path, doing: str) -> Iterator[None]:
    """Translate filesystem errors about `path` into one-line errors."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or path
        if isinstance(exc, PermissionError):
            hint = "check the file's and its directory's owner and permissions"
        elif isinstance(exc, IsADirectoryError) or exc.errno == errno.EISDIR:
            hint = "a directory is in the way; point `path` at a file"
        elif isinstance(exc, NotADirectoryError):
            hint = "a parent of the path is a file, not a directory"
        elif exc.errno == errno.ENOSPC:
            hint = "the disk is full"
        else:
            hint = exc.strerror or type(exc).__name__
        raise BackendError(f"{label}: {doing} {where} failed: {hint}", backend=label) from exc
    except UnicodeDecodeError as exc:
        raise BackendError(
            f"{label}: {doing} {path} failed: the file is not UTF-8 text",
            backend=label,
        ) from exc


# -- the sidecar -----------------------------------------------------------------------

_SIDECAR_VERSION = 1


def fingerprint(token: Secret, run_id: str, key: bytes | None = None) -> str:
    """The value's HMAC for the run that wrote it, under the store's key: reveals nothing."""
    return value_fingerprint(token, run_id, key)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who wrote a value: the run, the token's id/name and the value's fingerprint."""

    run_id: str
    token_id: str
    token_name: str
    fingerprint: str

    def owns(self, token: Secret | None, key: bytes | None) -> bool:
        return token is not None and fingerprint(token, self.run_id, key) == self.fingerprint

    def to_doc(self) -> dict[str, str]:
        return {
            "run_id": self.run_id,
            "token_id": self.token_id,
            "token_name": self.token_name,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_doc(cls, doc: Any) -> Owner | None:
        if not isinstance(doc, dict):
            return None
        fields = [doc.get(k) for k in ("run_id", "token_id", "token_name", "fingerprint")]
        strings = [f for f in fields if isinstance(f, str)]
        return cls(*strings) if len(strings) == len(fields) else None


@dataclass(frozen=True, slots=True)
class Sidecar:
    """`<path>.rotator.json`: `current` describes `<path>`, `run` the latest run's marker.

    `run.state` is `staging` (marker written, pending may or may not exist yet), then
    `promoting` (backup taken; the rename may or may not have happened) and `promoted`;
    `had_previous` says whether `<path>` existed when promote took the backup, and
    `previous` is the `current` entry from before this run (restored on rollback).

    Stage takes the backup (durable with the pending file) and records `had_previous` in
    the marker; promote writes `promoting` (and a new backup) only when `<path>` changed
    since or the run resumed under a newer lease, and then renames. A `staging` or
    `promoting` marker whose pending file is gone and whose run's value is in `<path>`
    means the rename happened, after the backup was durable: `load_sidecar` returns it as
    `promoted` (the final `promoted` write is not directory-fsynced).
    """

    current: Owner | None = None
    run: Owner | None = None
    state: str | None = None
    had_previous: bool = False
    previous: Owner | None = None

    def to_bytes(self, fence: int = 0) -> bytes:
        doc: dict[str, Any] = {
            "version": _SIDECAR_VERSION,
            **({"fence": fence} if fence else {}),
            "current": self.current.to_doc() if self.current else None,
            "run": None,
        }
        if self.run is not None:
            doc["run"] = {
                **self.run.to_doc(),
                "state": self.state,
                "had_previous": self.had_previous,
                "previous": self.previous.to_doc() if self.previous else None,
            }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Sidecar:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != _SIDECAR_VERSION:
            raise ValueError("unknown sidecar version")
        run = doc.get("run")
        if run is None:
            return cls(current=Owner.from_doc(doc.get("current")))
        state = run.get("state")
        if state not in ("staging", "promoting", "promoted"):
            raise ValueError(f"unknown run state {state!r}")
        return cls(
            current=Owner.from_doc(doc.get("current")),
            run=Owner.from_doc(run),
            state=state,
            had_previous=bool(run.get("had_previous")),
            previous=Owner.from_doc(run.get("previous")),
        )


def load_sidecar(
    sidecar_path: Path, *, pending: Path, path: Path, label: str, key: Callable[[], bytes | None]
) -> Sidecar:
    """The sidecar at `sidecar_path` (empty if absent); BackendError if it is not one."""
    data = read_bytes(sidecar_path)
    if data is None:
        return Sidecar()
    try:
        sidecar = Sidecar.from_bytes(data)
    except (ValueError, AttributeError) as exc:
        raise BackendError(
            f"{label}: {sidecar_path} is not a rotator sidecar ({exc}); "
            "move it away if no rotation is in progress",
            backend=label,
        ) from exc
    run = sidecar.run
    if (
        sidecar.state in ("staging", "promoting")
        and run is not None
        and not pending.exists()
        and run.owns(read_token(path), key())
    ):
        # The run's value is in `path` and its pending file is gone: promote's rename
        # happened (after the backup was durable, and fsynced); only the final sidecar
        # write, which promote does not fsync the directory for, was lost.
        return Sidecar(
            current=run,
            run=run,
            state="promoted",
            had_previous=sidecar.had_previous,
            previous=sidecar.previous,
        )
    return sidecar


def write_sidecar(
    sidecar_path: Path,
    sidecar: Sidecar,
    *,
    lease: LeaseGuard | None,
    label: str,
    sync_dir: bool = True,
) -> None:
    """Write `sidecar` (fence checked first), carrying the higher of its fence and ours."""
    seen = check_fence(sidecar_path, lease, label)
    mine = lease.fence if lease is not None else 0
    atomic_write_bytes(sidecar_path, sidecar.to_bytes(max(seen, mine)), sync_dir=sync_dir)


def check_fence(sidecar_path: Path, lease: LeaseGuard | None, label: str) -> int:
    """The sidecar's fencing number, read now; LeaseLost if newer than our lease's."""
    data = read_bytes(sidecar_path)
    try:
        seen = fence_of(json.loads(data).get("fence")) if data else 0
    except (ValueError, AttributeError):
        seen = 0
    if lease is not None:
        lease.refuse_newer(seen, f"{label} ({sidecar_path.name})")
    return seen
