"""The `file` backend: one token in one local file that consumers read.

Layout beside the consumer's file `<path>` (parent dirs created 0700):

    <path>                  what consumers read: the JSON document or the bare token;
                            keeps its owner, group and mode across rotations (0600 if new)
    <path>.pending          the staged value (0600, the file's owner and group) until
                            promote renames it over <path>
    <path>.rotator-backup   <path>'s bytes from just before promote, for rollback: always
                            0600, removed when the next run stages
    <path>.rotator.json     sidecar: who staged what (never a secret), see `backends._file_store`

Owner, group and mode preservation and the symlink policy: see `backends._file_store`.

Every write is atomic and durable (temp file, fsync, rename, fsync the directory), so a
consumer reading `<path>` at any instant sees the complete old or the complete new value
(I1). The sidecar is written *before* the first value write of a run (a write-ahead
marker; promote writes it again before the rename only when the marker no longer says
enough), and values
are recognised by an HMAC fingerprint (keyed with the state store's secret key and the
run id, see `backends.base.value_fingerprint`), so a run killed between any
two steps is found again by `read_staged`/`promote`/`rollback` on resume.

Fencing (I4): the sidecar carries `fence`, the highest lease fencing number any run wrote
it under. Every sidecar write and every value write (pending, rename, restore) first
re-reads it and refuses (LeaseLost) when it is newer than the run's own lease: a run that
stalled past its lease cannot touch the file once its successor has written here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends._file_store import (
    Owner,
    Sidecar,
    check_fence,
    fingerprint,
    load_sidecar,
    match_target,
    read_bytes,
    read_token,
    resolve_path,
    translate_errors,
    unlink,
    write_backup,
    write_sidecar,
)
from backends._lease import LeaseGuard
from backends.base import (
    CheckedTable,
    KeySource,
    ModelOnDemand,
    Receipt,
    StoredToken,
    TokenRecord,
    ValueFormat,
    decode_value,
    encode_value,
)
from rotator.errors import BackendConflict, BackendError
from rotator.util.fsutil import atomic_write_bytes, fsync_dir

if TYPE_CHECKING:
    from backends.models import FileConfig

__all__ = ["FileBackend", "FileConfig"]


class FileBackend:
    """A token in a local file; `promote` renames the staged file over the live one."""

    # FileConfig is a pydantic model: imported when first read, not with this module.
    Config = ModelOnDemand("backends.models", "FileConfig")

    def __init__(
        self, path: Path, *, fmt: ValueFormat = "json", follow_symlinks: bool = False
    ) -> None:
        self.configured = path
        self.fmt: ValueFormat = fmt
        self.follow_symlinks = follow_symlinks
        self._at(path)
        self._key_source: KeySource | None = None
        # Set once, not in _at: every verb re-resolves the path, and must keep its fence.
        self._lease: LeaseGuard | None = None

    def _at(self, path: Path) -> None:
        self.path = path
        self.pending = path.with_name(path.name + ".pending")
        self.backup = path.with_name(path.name + ".rotator-backup")
        self.sidecar = path.with_name(path.name + ".rotator.json")

    def _resolve(self) -> None:
        """Apply the symlink policy (`backends._file_store.resolve_path`)."""
        self._at(
            resolve_path(self.configured, follow_symlinks=self.follow_symlinks, label=self.label)
        )

    def use_fingerprint_key(self, source: KeySource) -> None:
        """Key the sidecar fingerprints with the state store secret key (the engine calls it)."""
        self._key_source = source

    def _key(self) -> bytes | None:
        return self._key_source() if self._key_source is not None else None

    @classmethod
    def from_config(cls, config: Any, *, account: str, base_dir: Path) -> FileBackend:
        """Build from a validated `FileConfig`; a relative `path` resolves against `base_dir`."""
        if isinstance(config, CheckedTable):  # proved valid: FileConfig's fields, no pydantic
            configured = str(config["path"])
            fmt: ValueFormat = config.get("format", "json")
            follow_symlinks = bool(config.get("follow_symlinks", False))
        else:
            from backends.models import FileConfig

            cfg = config if isinstance(config, FileConfig) else FileConfig.model_validate(config)
            configured, fmt, follow_symlinks = cfg.path, cfg.format, cfg.follow_symlinks
        path = Path(configured).expanduser()
        return cls(
            path if path.is_absolute() else (base_dir / path).absolute(),
            fmt=fmt,
            follow_symlinks=follow_symlinks,
        )

    @property
    def label(self) -> str:
        return f"file:{self.configured}"

    def describe(self) -> dict[str, str]:
        facts = {"type": "file", "path": str(self.configured), "format": self.fmt}
        if self.follow_symlinks:
            facts["follow_symlinks"] = "true"
        return facts

    # -- reads ---------------------------------------------------------------------------

    def read_current(self) -> StoredToken | None:
        """What a consumer reads from `path` now; None when the file is absent or empty.

        Raises BackendError when the file (or the sidecar) cannot be read.
        """
        with self._errors("reading"):
            token = read_token(self.path)
            if token is None:
                return None
            current = self._load_sidecar().current
            owner = current if current is not None and current.owns(token, self._key()) else None
            return self._stored(self.path, owner)

    def read_staged(self, run_id: str) -> StoredToken | None:
        """The value `run_id` staged, from `.pending` or (once promoted) from `path`."""
        with self._errors("reading the staged value of"):
            sidecar = self._load_sidecar()
            run = sidecar.run
            if run is not None and run.run_id == run_id:
                for candidate in (self.pending, self.path):
                    if run.owns(read_token(candidate), self._key()):
                        return self._stored(candidate, run)
            current = sidecar.current
            owned = current is not None and current.owns(read_token(self.path), self._key())
            if current is not None and current.run_id == run_id and owned:
                return self._stored(self.path, current)
            return None

    # -- writes --------------------------------------------------------------------------

    def stage(self, record: TokenRecord, *, run_id: str) -> Receipt:
        """Write `record` to `path.pending` (atomic, 0600); `path` is not touched.

        Also copies `path` to the backup promote will need (one directory fsync covers the
        backup's and the pending file's renames). Safe to replay: when this run's exact
        token is already pending or live, nothing is written. Raises BackendConflict when
        another run's staged value is present.
        """
        receipt: Receipt = {"path": str(self.path), "pending": str(self.pending)}
        owner = Owner(
            run_id,
            record.token_id,
            record.token_name,
            fingerprint(record.token, run_id, self._key()),
        )
        with self._errors("staging"):
            sidecar = self._load_sidecar()
            self._check_fence()
            if sidecar.run is not None and sidecar.run.run_id == run_id:
                if owner == sidecar.run and any(
                    owner.owns(read_token(p), self._key()) for p in (self.pending, self.path)
                ):
                    # A replay after a kill: what the killed stage renamed may not be durable
                    # yet, and promote relies on it (only on this path: one fsync).
                    fsync_dir(self.path.parent)
                    return receipt
                previous = sidecar.previous
            else:
                self._check_foreign(sidecar)
                current = sidecar.current
                owned = current is not None and current.owns(read_token(self.path), self._key())
                previous = current if owned else None
            live = read_bytes(self.path)
            # `had_previous` as of now: promote writes the sidecar again only if that changed.
            self._write_sidecar(
                Sidecar(
                    current=sidecar.current,
                    run=owner,
                    state="staging",
                    had_previous=live is not None,
                    previous=previous,
                )
            )
            self._reached("marker_written")
            data = encode_value(record, self.fmt)
            self._check_fence()
            write_backup(self.backup, live)  # its rename is made durable with the pending file's
            atomic_write_bytes(self.pending, (data + "\n" if self.fmt == "json" else data).encode())
            # Owner and group now, so a rotator that cannot keep them refuses before anything
            # is live; the mode (consumers' access) only at promote.
            match_target(self.pending, self.path, label=self.label, mode=False)
            self._reached("pending_written")
        return receipt

    def promote(self, receipt: Receipt, *, run_id: str) -> None:
        """Back up `path`, then rename `path.pending` over it (atomic, directory fsynced).

        Safe to replay at every step. Raises BackendError when nothing of `run_id` is staged.
        The backup stage took is used as it is when `path` still holds the same bytes and
        the staging marker says all a crash needs (see `_take_backup`).
        """
        with self._errors("promoting"):
            sidecar = self._load_sidecar()
            seen = self._check_fence()
            run = sidecar.run
            if run is None or run.run_id != run_id:
                current = sidecar.current
                if current is not None and current.run_id == run_id:
                    return
                raise BackendError(
                    f"{self.label}: nothing staged by run {run_id} to promote; "
                    "run the rotation again to stage it",
                    backend=self.label,
                )
            if not run.owns(read_token(self.path), self._key()):
                if not run.owns(read_token(self.pending), self._key()):
                    raise BackendError(
                        f"{self.label}: {self.pending} no longer holds run {run_id}'s value; "
                        "roll the run back and rotate again",
                        backend=self.label,
                    )
                self._take_backup(sidecar, run, seen)
                self._reached("backup_written")
                # Consumers keep the access they had.
                match_target(self.pending, self.path, label=self.label)
                self._check_fence()
                os.replace(self.pending, self.path)
                fsync_dir(self.path.parent)
                self._reached("renamed")
            unlink(self.pending)
            had_previous = self._load_sidecar().had_previous  # as the marker recorded it
            # Content fsynced, rename not: a crash may leave the marker (`staging` or
            # `promoting`), which `_load_sidecar` reads as `promoted` once the rename above
            # is on disk.
            self._write_sidecar(
                Sidecar(
                    current=run,
                    run=run,
                    state="promoted",
                    had_previous=had_previous,
                    previous=sidecar.previous,
                ),
                sync_dir=False,
            )

    def rollback(self, receipt: Receipt | None, *, run_id: str) -> None:
        """Put back `path`'s bytes from before `run_id` (removing it if it did not exist).

        Safe to replay; a no-op when nothing of `run_id` is present. Raises BackendConflict
        when this run's value is live but its backup was replaced by another run.
        """
        with self._errors("rolling back"):
            sidecar = self._load_sidecar()
            self._check_fence()
            run = sidecar.run
            if run is None or run.run_id != run_id:
                current = sidecar.current
                if (
                    current is not None
                    and current.run_id == run_id
                    and current.owns(read_token(self.path), self._key())
                ):
                    raise BackendConflict(
                        f"{self.label}: run {run_id}'s value is live but another run's state "
                        f"replaced its backup; restore {self.path} by hand",
                        backend=self.label,
                    )
                if self._lease is not None and self.sidecar.exists():
                    with contextlib.suppress(OSError):  # best effort, like Vault's
                        self._write_sidecar(sidecar)  # a no-op still raises the fence
                return
            current = sidecar.current
            if current is not None and current.run_id == run_id:
                current = sidecar.previous
            if run.owns(read_token(self.path), self._key()):
                self._check_fence()
                if sidecar.state not in ("promoting", "promoted"):
                    raise BackendConflict(
                        f"{self.label}: {self.path} holds run {run_id}'s value but no backup "
                        "was taken; restore the file by hand",
                        backend=self.label,
                    )
                if sidecar.had_previous:
                    if not self.backup.exists():
                        raise BackendError(
                            f"{self.label}: backup {self.backup} is missing; restore "
                            f"{self.path} by hand",
                            backend=self.label,
                        )
                    # The backup itself is 0600, ours.
                    match_target(self.backup, self.path, label=self.label)
                    os.replace(self.backup, self.path)
                else:
                    unlink(self.path)
                fsync_dir(self.path.parent)
                self._reached("restored")
                current = sidecar.previous
            unlink(self.pending)
            unlink(self.backup)
            self._write_sidecar(Sidecar(current=current))

    # -- helpers -------------------------------------------------------------------------

    def _reached(self, step: str) -> None:
        """Called after each durable step; tests replace it to simulate a crash there."""

    def _check_foreign(self, sidecar: Sidecar) -> None:
        """Refuse to stage over another run's unfinished work; clear a finished run's leftovers."""
        run = sidecar.run
        pending_exists = self.pending.exists()
        if run is None:
            if pending_exists:
                raise BackendConflict(
                    f"{self.label}: {self.pending} exists but no rotator run staged it; "
                    "delete it if nothing else is writing this file",
                    backend=self.label,
                )
            return
        if pending_exists or sidecar.state == "promoting":
            raise BackendConflict(
                f"{self.label}: run {run.run_id} left {self.pending.name} in state "
                f"{sidecar.state}; resume or roll back that run (`rotator rotate`), or delete "
                f"{self.pending} and {self.sidecar} if it is abandoned",
                backend=self.label,
            )
        unlink(self.backup)  # a promoted run's backup: that run is over

    def _take_backup(self, sidecar: Sidecar, run: Owner, seen: int) -> None:
        """Make sure a durable backup of `path` as it is now exists before the rename.

        Stage took it; in the common case it is still `path`'s bytes and the staging marker
        still says what a crash after the rename needs (`had_previous`, and this lease's
        `fence`), and nothing is written. Otherwise (the file changed, appeared or went
        since stage; the run resumed under a newer lease, whose fence must reach the file)
        the backup is taken again and `promoting` written, whose directory fsync covers it.
        """
        data = read_bytes(self.path)
        mine = self._lease.fence if self._lease is not None else 0
        if (
            sidecar.state == "staging"
            and sidecar.had_previous == (data is not None)
            and read_bytes(self.backup) == data
            and seen >= mine
        ):
            return
        write_backup(self.backup, data)
        self._write_sidecar(
            Sidecar(
                current=sidecar.current,
                run=run,
                state="promoting",
                had_previous=data is not None,
                previous=sidecar.previous,
            )
        )

    def _stored(self, path: Path, owner: Owner | None) -> StoredToken:
        text = (read_bytes(path) or b"").decode()
        if owner is None:
            return decode_value(text)
        return decode_value(
            text, token_id=owner.token_id, token_name=owner.token_name, run_id=owner.run_id
        )

    def _load_sidecar(self) -> Sidecar:
        return load_sidecar(
            self.sidecar, pending=self.pending, path=self.path, label=self.label, key=self._key
        )

    def _write_sidecar(self, sidecar: Sidecar, *, sync_dir: bool = True) -> None:
        write_sidecar(self.sidecar, sidecar, lease=self._lease, label=self.label, sync_dir=sync_dir)

    def bind_lease(self, guard: LeaseGuard | None) -> None:
        """Fence every later write with the run's lease (see the module docstring)."""
        self._lease = guard

    def _check_fence(self) -> int:
        """The sidecar's fencing number, read now; LeaseLost if newer than our lease's."""
        return check_fence(self.sidecar, self._lease, self.label)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Apply the symlink policy, then translate filesystem errors into one-line errors."""
        self._resolve()
        with translate_errors(self.label, self.path, doing):
            yield


def __getattr__(name: str) -> Any:
    """`FileConfig` lives in backends/models (pydantic), imported on first use."""
    if name == "FileConfig":
        from backends.models import FileConfig

        return FileConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
