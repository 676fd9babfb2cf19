"""The file checkpoint store: the default, for one host.

`FileStore` keeps the documents a store holds (rotator/state/store.py) as private JSON
files under one directory; `flock` makes each lease check-and-write atomic
(rotator/state/lease.py), and a durable store writes through the journal
(rotator/state/journal.py): documents become durable at barriers.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from rotator.errors import LeaseHeld, LeaseLost, StateError
from rotator.state.fileio import AccountFiles, publish_once
from rotator.state.journal import Journal, boot_id
from rotator.state.lease import (
    RENEW_BELOW,
    Lease,
    lease_held,
    lease_is_free,
    next_lease,
    pid_alive,
)
from rotator.state.spare import read_whole, write_via_spare
from rotator.state.store import SCHEMA_VERSION, Clock, Doc, parse_fingerprint_key, utcnow
from rotator.util.fsutil import atomic_write_bytes, ensure_private_dir, fsync_dir, replace_bytes

__all__ = ["FileStore"]

LOCK_WAIT = 30.0  # seconds to wait for the per-account state lock (see FileStore._flock)
DELETE_BATCH = 256  # run deletions per journal append in `delete_runs`
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


class FileStore:
    """Checkpoints as JSON files under one directory (mode 0700, files 0600).

    Layout: `key`, `runs/<run_id>.json`, `accounts/<account>.json`,
    `leases/<account>.json` and `leases/<account>.lock` (the flock target). A durable
    store rewrites documents through hidden spares next to them (`.<name>.spare`,
    rotator/state/spare.py): one per account record and lease, and a running run's until
    its lease is released.
    """

    def __init__(
        self,
        root: Path,
        *,
        clock: Clock = utcnow,
        durable: bool = True,
        host: str | None = None,
        pid_alive: Callable[[int], bool] = pid_alive,
    ) -> None:
        self.root = root
        self._root = os.fspath(root)
        self._runs = f"{self._root}/runs"
        self._leases = f"{self._root}/leases"
        self._clock = clock
        self._durable = durable
        self._host = host or socket.gethostname()
        self._pid_alive = pid_alive
        self._key: bytes | None = None
        # Durable stores write through the journal (rotator/state/journal.py): documents become
        # durable at barriers, one fdatasync each. Without a boot id (not Linux) every
        # document write is durable on its own, as before.
        boot = boot_id() if durable else None
        self._journal = Journal(root, boot) if boot else None
        self._dirs: set[str] = set()  # directories this store made sure exist
        self._files: dict[str, AccountFiles] = {}

    def describe(self) -> str:
        return f"file:{self.root}"

    # -- key ---------------------------------------------------------------------------

    def fingerprint_key(self) -> bytes:
        """The store's HMAC key, created (0600, exclusively) on first use."""
        if self._key is None:
            path = self.root / "key"
            with self._errors("create the fingerprint key in"):
                try:  # the common case: the key exists (publishing first costs 2 fsyncs)
                    text = path.read_text(errors="replace")
                except FileNotFoundError:
                    ensure_private_dir(self.root)
                    key = secrets.token_bytes(32)
                    if publish_once(path, key.hex().encode()):
                        self._key = key
                        return key
                    text = path.read_text(errors="replace")
                self._key = parse_fingerprint_key(text, str(path))
        return self._key

    # -- leases ------------------------------------------------------------------------

    def acquire_lease(self, account: str, *, owner: str, ttl: timedelta) -> Lease:
        """Take the account's lease, or raise LeaseHeld naming the holder and expiry."""
        files = self._account_files(account)
        fd = self._lock(files, account)
        try:
            existing = self._read_lease(files)
            now = self._clock()
            if not lease_is_free(existing, now=now, host=self._host, pid_alive=self._pid_alive):
                assert existing is not None
                raise lease_held(account, existing)
            lease = next_lease(
                existing, account=account, owner=owner, host=self._host, now=now, ttl=ttl
            )
            # Durable at the first barrier: the fence before the run's first side effect.
            self._write_lease(files, lease)
            return lease
        finally:
            os.close(fd)

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up early; a no-op if it was already taken over."""
        files = self._account_files(lease.account)
        fd = self._lock(files, lease.account)
        try:
            current = self._read_lease(files)
            if current is not None and current.fence == lease.fence and not current.released:
                self._write_lease(files, replace(current, released=True))
            if files.run_spare is not None:  # the run is done with: do not keep its spare
                with contextlib.suppress(OSError):
                    os.unlink(files.run_spare)
                files.run_spare = None
        finally:
            os.close(fd)
        self._barrier()  # the run's last records durable before we return

    def read_lease(self, account: str) -> Lease | None:
        return self._read_lease(self._account_files(account))

    # -- documents ---------------------------------------------------------------------

    def load_account(self, account: str) -> Doc | None:
        return self._read(self._account_files(account).account)

    def load_run(self, run_id: str) -> Doc | None:
        if not run_id.replace("-", "").isalnum():
            raise StateError(f"run id {run_id!r} is not a rotator run id")
        return self._read(f"{self._runs}/{run_id}.json")

    def save(self, lease: Lease, *, run: Doc | None = None, account: Doc | None = None) -> Lease:
        """Write the run and/or account document under `lease`; returns the (renewed) lease.

        Raises LeaseLost when another run has taken the lease over since. A save with no
        document is a fence (`RunContext._fence`, before every external side effect): it
        is also the durability barrier, so everything written before it is on disk when
        it returns. A save with documents is durable at the next barrier (or lease release).
        """
        current = self._save(lease, run=run, account=account)
        if run is None and account is None:
            self._barrier()
        return current

    def check_lease(self, lease: Lease) -> Lease:
        """A fence that is not a barrier: check and renew `lease` (LeaseLost as `save`), and
        make nothing durable. Only for a fence followed by reads alone, whose next effect
        has a barrier of its own (`RunContext._fence(..., barrier=False)`)."""
        return self._save(lease)

    def _save(self, lease: Lease, *, run: Doc | None = None, account: Doc | None = None) -> Lease:
        files = self._account_files(lease.account)
        fd = self._lock(files, lease.account)
        try:
            current = self._read_lease(files)
            if current is None or current.fence != lease.fence or current.released:
                holder = current.describe() if current else "nobody"
                raise LeaseLost(
                    f"lease on {lease.account!r} was taken over (now held by {holder}); "
                    "this run stopped without writing"
                )
            # Every document reaches its file at once (not fsynced: the journal has it), run
            # first: the files always show a prefix of the writes, and what a run is doing
            # right now (`verifying` during a long check) is what `rotator status`, a
            # supervisor or a second process reads.
            if run is not None:
                name = f"{run['run_id']}.json"
                files.run_spare = f"{self._runs}/.{name}.spare"
                self._write(f"runs/{name}", self._encode(run), files.run_spare)
            if account is not None:
                self._write(files.account_rel, self._encode(account), files.account_spare)
            now = self._clock()
            ttl = lease.expires_at - lease.acquired_at
            if current.expires_at - now < ttl / RENEW_BELOW:
                current = replace(
                    current, acquired_at=now, expires_at=now + ttl, version=current.version + 1
                )
                self._write_lease(files, current)
        finally:
            os.close(fd)
        return current

    # -- retention (rotator/ops/retention.py) -----------------------------------------------

    def list_runs(self) -> Iterator[Doc]:
        """Every run document, in no particular order (`rotator state prune` reads them all)."""
        with self._errors("list"):
            try:
                names = sorted(
                    n for n in os.listdir(self._runs) if n.endswith(".json") and n[0] != "."
                )
            except FileNotFoundError:
                names = []
        for name in names:
            doc = self._read(f"{self._runs}/{name}")
            if doc is not None:
                yield doc

    def delete_run(self, run_id: str) -> None:
        """Remove a finished run's document (retention; the caller dropped it from the index)."""
        self.delete_runs([run_id])

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Remove finished runs' documents, durably when this returns: one sync for them all.

        With the journal, a tombstone per run (so a replay after a power loss does not
        revive it) is appended before its file goes, DELETE_BATCH to an append; without
        it, the files go and their directory is fsynced once. A crash part way leaves
        some documents not deleted yet, which the next prune finds (nothing indexes them).
        """
        with self._errors("delete from"):
            if self._journal is not None:
                for start in range(0, len(run_ids), DELETE_BATCH):
                    names = [f"{run_id}.json" for run_id in run_ids[start : start + DELETE_BATCH]]
                    self._journal.write(
                        [(f"runs/{name}", None) for name in names],
                        functools.partial(self._unlink_runs, names),
                    )
                if run_ids:
                    self._journal.sync()
                return
            if self._unlink_runs([f"{run_id}.json" for run_id in run_ids]) and self._durable:
                fsync_dir(Path(self._runs))

    def _unlink_runs(self, names: Sequence[str]) -> bool:
        """Remove these files of runs/ (and any spare a killed run left); True if any was there."""
        removed = False
        for name in names:
            try:
                os.unlink(f"{self._runs}/{name}")
                removed = True
            except FileNotFoundError:
                pass
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self._runs}/.{name}.spare")
        return removed

    # -- plumbing ----------------------------------------------------------------------

    def _account_files(self, account: str) -> AccountFiles:
        files = self._files.get(account)
        if files is None:
            files = self._files.setdefault(account, AccountFiles(self._root, account))
        return files

    def _read_lease(self, files: AccountFiles) -> Lease | None:
        """The account's lease as the file holds it now (read every time: another process
        may have taken it over); parsed again only when its bytes changed."""
        data = self._read_bytes(files.lease_path)
        if data is None:
            return None
        cached = files.lease
        if cached is not None and cached[0] == data:
            return cached[1]
        doc = self._parse(files.lease_path, data)
        lease = Lease.from_doc(doc) if doc else None
        files.lease = (data, lease)  # one store: a thread reading it sees a matching pair
        return lease

    def _write_lease(self, files: AccountFiles, lease: Lease) -> None:
        data = self._encode(lease.to_doc())
        self._write(files.lease_rel, data, files.lease_spare)
        files.lease = (data, lease)

    def _lock(self, files: AccountFiles, account: str) -> int:
        """Open and flock the account's lock file; the caller closes the fd (which unlocks)."""
        with self._errors("lock"):
            if self._leases not in self._dirs:
                ensure_private_dir(Path(self._leases))
                self._dirs.add(self._leases)
            try:
                fd = os.open(files.lock, _LOCK_FLAGS, 0o600)
            except FileNotFoundError:  # the directory went away since: make it again
                ensure_private_dir(Path(self._leases))
                fd = os.open(files.lock, _LOCK_FLAGS, 0o600)
        try:
            self._flock(fd, account)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _flock(self, fd: int, account: str) -> None:
        """Take the account's lock, waiting at most LOCK_WAIT seconds.

        Every critical section is a few file writes; a lock held longer belongs to a
        process that stalled inside one (suspended, stopped). Waiting for it forever would
        hang this run too, so give up like on a held lease (exit 3, try again later).
        """
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LeaseHeld(
                        f"account {account!r}: the state lock {self.root}/leases/"
                        f"{account.lower()}.lock has been held for over {LOCK_WAIT:.0f}s by a "
                        "stalled process; try again later",
                        account=account,
                        holder="a stalled process holding the state lock",
                        expires_at=None,
                    ) from None
                time.sleep(0.01)

    def _read_bytes(self, path: str) -> bytes | None:
        if self._journal is not None:
            with self._errors("recover the journal of"):
                self._journal.recover_once()
        try:
            return read_whole(path)  # whole, also while a writer swaps spares (spare.py)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read state file {path}: {exc.strerror}") from exc

    def _read(self, path: str) -> Doc | None:
        data = self._read_bytes(path)
        return None if data is None else self._parse(path, data)

    def _parse(self, path: str, data: bytes) -> Doc:
        try:
            doc = json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise StateError(
                f"state file {path} is corrupt (not JSON); restore or remove it"
            ) from exc
        schema = doc.get("schema", SCHEMA_VERSION) if isinstance(doc, dict) else None
        if schema != SCHEMA_VERSION:
            raise StateError(
                f"state file {path} has schema {schema!r}; this rotator reads {SCHEMA_VERSION}"
            )
        return doc  # type: ignore[no-any-return]

    def _encode(self, doc: Doc) -> bytes:
        # One line, no indent: only then does json use its C encoder (3x faster here, and a
        # rotation writes some 30 documents). `python -m json.tool` shows a file indented.
        return json.dumps({"schema": SCHEMA_VERSION, **doc}, sort_keys=True).encode()

    def _write(self, rel: str, data: bytes, spare: str) -> None:
        """Replace the document at `rel` (relative to the root) with `data`; a durable store
        writes it through `spare` (rotator/state/spare.py)."""
        path = f"{self._root}/{rel}"
        try:
            if self._journal is None:
                atomic_write_bytes(Path(path), data, durable=self._durable)
                return
            self._journal.write([(rel, data)], lambda: self._write_file(path, data, spare, rel))
        except OSError as exc:
            raise self._error("write to", exc) from exc

    def _write_file(self, path: str, data: bytes, spare: str, rel: str) -> None:
        """Atomic, not fsynced (the journal has it); the directory made once per store."""
        directory, name = path.rsplit("/", 1)
        known = directory in self._dirs
        if not known:
            ensure_private_dir(Path(directory))
        try:
            self._put(directory, name, data, spare, rel)
        except FileNotFoundError:
            if not known:
                raise
            ensure_private_dir(Path(directory))  # the directory went away
            self._put(directory, name, data, spare, rel)
        self._dirs.add(directory)

    def _put(self, directory: str, name: str, data: bytes, spare: str, rel: str) -> None:
        # Through the spare (no file created, no inode freed) once the journal would restore
        # this document after a power loss; before that (its first write since the journal
        # began or was compacted), and when a reader still holds the spare, a new file.
        journal = self._journal
        if journal is None or not journal.covers(rel) or not write_via_spare(
            directory, name, spare, data
        ):
            replace_bytes(directory, name, data)

    def _barrier(self) -> None:
        """Make every document this store wrote durable (one journal fdatasync, shared)."""
        if self._journal is not None:
            with self._errors("sync the journal of"):
                self._journal.sync()

    def _error(self, action: str, exc: OSError) -> StateError:
        return StateError(
            f"cannot {action} state directory {self.root}: {exc.strerror or exc}; "
            "check [state] path and its permissions"
        )

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise self._error(action, exc) from exc
