"""How the `file` backend's files are read and written; `backends.file` says when.

`backends.file.FileBackend` runs the rotation protocol (what each verb writes, in which
order, and what a resumed run finds). This module is what it stands on:

The filesystem: how one path is read (`read_bytes`, `read_token`), how a new file gets
the live file's owner, group and mode (`match_target`: when `<path>` belongs to another
user or group, the new file is given them, or `stage` refuses before anything is live),
how the backup copy is written (`write_backup`), how a symbolic link at the configured
path is refused or followed (`resolve_path`), and how an `OSError` becomes a one-line
`BackendError` (`translate_errors`). Durable writes are `rotator.util.fsutil`'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from backends.base import decode_value
from rotator.errors import BackendError
from rotator.secret import Secret
from rotator.util.fsutil import atomic_write_bytes

__all__ = [
    "match_target",
    "read_bytes",
    "read_token",
    "resolve_path",
    "translate_errors",
    "unlink",
    "write_backup",
]


def resolve_path(configured: Path, *, follow_symlinks: bool, label: str) -> Path:
    """Apply the symlink policy: refuse a link at `configured`, or follow it when configured.

    Promote renames a file over `path`; over a symlink that would replace the link
    itself with a plain file, silently cutting off whatever else reads the target.
    """
    if not configured.is_symlink():
        return configured
    if not follow_symlinks:
        raise BackendError(
            f"{label}: {configured} is a symbolic link, which rotating would "
            "replace with a plain file; point `path` at the real file, or set "
            "follow_symlinks = true to rotate the file it points to",
            backend=label,
        )
    return Path(os.path.realpath(configured))


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
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
