"""The file state store's write-ahead journal: one `fdatasync` per barrier, not two per file.

`FileStore` keeps its documents as one JSON file each (`runs/`, `accounts/`, `leases/`:
what `rotator status`, the tests and people read). Making each of those writes durable
costs two fsyncs (the temp file, then the directory after the rename), some 50 per
rotation. Instead every document write is first appended to this journal, then written
to its JSON file atomically (temp file + rename) *without* fsync, and durability is paid
only at a barrier: one `fdatasync` of the journal, shared by every thread that needs one at that
moment (group commit). See docs/performance.md, section 6.

Why the JSON files stay correct:

* a process that dies (SIGKILL, OOM, a crash) loses nothing: its writes are in the page
  cache, which every later reader sees;
* only a machine crash or power loss can lose an unsynced write, and that always means a
  new kernel boot. The journal's name carries the boot id it was written under
  (`journal/<boot id>.log`); the first store access of a later boot finds the old journal,
  replays its last record of every document into the JSON files (a zero-length or stale
  file left by the crash is overwritten), `sync`s and deletes it. Everything up to the
  last barrier is in that journal, so the documents come back at least as new as the
  last barrier: exactly the state the engine needs, because a barrier precedes every
  external side effect (`RunContext._fence`) and every release of a lease.

Records: `\\n<crc32 hex> <payload>\\n`, the payload being the document's path, a NUL and
`w` followed by the file's bytes (`runs/<id>.json\\0w{...}`), or the path, a NUL and `d`
for a deleted file. A document whose bytes or path hold a newline (never one this store
encodes: its JSON is one line) is written in the older JSON form `{"p": "runs/<id>.json",
"b": "<the file's text>"}` (`"b": null` for a deleted file), which replay still reads.
Embedding the bytes as they are costs nothing per write, where escaping them into a JSON
string cost as much as encoding the document. A record torn by the crash fails its
checksum and is skipped; the leading newline keeps the record after it intact.

Several processes share one journal (O_APPEND; each holds a shared `flock` on it while
it lives). When it passes `COMPACT_AT` bytes, a writer that can take the lock exclusively
`sync`s the filesystem (every JSON file is then durable) and truncates it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rotator.util.fsutil import atomic_write_bytes, ensure_private_dir, fsync_dir

__all__ = ["COMPACT_AT", "Journal", "boot_id", "read_records"]

COMPACT_AT = 32 * 2**20
_DOC_PATH = re.compile(r"^(runs|accounts|leases)/[^/\x00]+\.json$")


def boot_id() -> str | None:
    """This kernel boot's id (Linux); None where the platform has none (no journal then)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return text if re.fullmatch(r"[0-9a-f-]{16,64}", text) else None


def _record(rel: str, data: bytes | None) -> bytes:
    path = rel.encode()
    if b"\n" in path or b"\0" in path or (data is not None and b"\n" in data):
        payload = json.dumps({"p": rel, "b": None if data is None else data.decode()}).encode()
    elif data is None:
        payload = path + b"\0d"
    else:
        payload = b"%s\0w%s" % (path, data)
    return b"\n%08x %s\n" % (zlib.crc32(payload), payload)


def _parse(payload: bytes) -> tuple[object, object]:
    """(path, bytes or None) of a record's payload, in either form; ValueError if neither."""
    if payload[:1] == b"{":
        doc = json.loads(payload)
        text = doc.get("b")
        return doc.get("p"), text.encode() if isinstance(text, str) else text
    rel, sep, rest = payload.partition(b"\0")
    if not sep or rest[:1] not in (b"w", b"d") or (rest[:1] == b"d" and len(rest) > 1):
        raise ValueError("not a record")
    return rel.decode(), rest[1:] if rest[:1] == b"w" else None


def read_records(blob: bytes) -> Iterator[tuple[str, bytes | None]]:
    """The intact records of a journal, in order; torn or foreign lines are skipped."""
    for line in blob.split(b"\n"):
        if len(line) < 10 or line[8:9] != b" ":
            continue
        payload = line[9:]
        try:
            if int(line[:8], 16) != zlib.crc32(payload):
                continue
            rel, data = _parse(payload)
        except (ValueError, AttributeError):
            continue
        if not isinstance(rel, str) or not _DOC_PATH.match(rel):
            continue
        if data is None or isinstance(data, bytes):
            yield rel, data


class Journal:
    """The journal of the store at `root`, for this boot. Thread-safe; one per FileStore."""

    def __init__(self, root: Path, boot: str) -> None:
        self.root = root
        self.dir = root / "journal"
        self.path = self.dir / f"{boot}.log"
        self._fd: int | None = None
        self._recovered = False
        self._open_lock = threading.Lock()
        # Appends (with the file writes they cover) run side by side; a compaction waits
        # for them all and holds off new ones (a reader/writer gate, compaction the writer).
        self._gate = threading.Condition()
        self._active = 0
        self._exclusive = False
        self._cv = threading.Condition()
        self._written = 0  # appends made by this process
        self._synced = 0  # of which known durable
        self._syncing = False
        # Which documents a replay would restore from this process's own records (see
        # `covers`): each path -> the append count of its first record since the journal
        # began or was compacted; covered once `_synced` has reached it.
        self._first: dict[str, int] = {}

    @contextlib.contextmanager
    def _alone(self) -> Iterator[bool]:
        """Exclusive use within this process (False when another compaction is running)."""
        with self._gate:
            if self._exclusive:
                yield False
                return
            self._exclusive = True
            while self._active:
                self._gate.wait()
        try:
            yield True
        finally:
            with self._gate:
                self._exclusive = False
                self._gate.notify_all()

    # -- recovery after a reboot -------------------------------------------------------

    def recover_once(self) -> None:
        """Replay journals a previous boot left (once per instance; cheap when none)."""
        if not self._recovered:
            with self._open_lock:
                if not self._recovered:
                    self._recover()
                    self._recovered = True

    def _old_journals(self) -> list[Path]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return [self.dir / n for n in names if n.endswith(".log") and n != self.path.name]

    def _recover(self) -> None:
        if not self._old_journals():
            return
        lock_fd = os.open(self.dir / "recover.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            olds = sorted(self._old_journals(), key=lambda p: p.stat().st_mtime_ns)
            latest: dict[str, bytes | None] = {}
            for old in olds:
                for rel, data in read_records(old.read_bytes()):
                    latest[rel] = data
            for rel, data in latest.items():
                target = self.root / rel
                if data is None:
                    target.unlink(missing_ok=True)
                else:
                    atomic_write_bytes(target, data, durable=False)
            os.sync()  # every replayed file durable before the journal that had it goes
            for old in olds:
                old.unlink()
            fsync_dir(self.dir)
        finally:
            os.close(lock_fd)

    # -- writing -----------------------------------------------------------------------

    def _open(self) -> int:
        with self._open_lock:
            return self._fd if self._fd is not None else self._open_locked()

    def _open_locked(self) -> int:
        if self._fd is None:
            if not self._recovered:
                self._recover()
                self._recovered = True
            ensure_private_dir(self.dir)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
                fsync_dir(self.dir)  # a new journal's name must survive the crash it is for
            except FileExistsError:
                fd = os.open(self.path, flags)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._fd = fd
        return self._fd

    def write(
        self, entries: Sequence[tuple[str, bytes | None]], apply: Callable[[], object]
    ) -> None:
        """Append `entries` (relative path, file bytes or None for a deletion), then `apply()`
        (which writes the files themselves); not durable until `sync()`."""
        blob = b"".join([_record(rel, data) for rel, data in entries])
        # The gate's shared side (see __init__), inline: this runs at every checkpoint
        # write. A compaction (which syncs the filesystem and truncates the journal) never
        # runs between the append and the file write it covers.
        gate = self._gate
        with gate:
            while self._exclusive:
                gate.wait()
            self._active += 1
        try:
            fd = self._fd if self._fd is not None else self._open()
            if os.write(fd, blob) != len(blob):  # O_APPEND: one call, whoever else appends
                raise OSError(errno.EIO, "short write to the journal")
            apply()
            with self._cv:
                self._written += 1
                for rel, data in entries:
                    if data is None:  # deleted: a later file of that name starts uncovered
                        self._first.pop(rel, None)
                    else:
                        self._first.setdefault(rel, self._written)
            full = os.lseek(fd, 0, os.SEEK_CUR) >= COMPACT_AT
        finally:
            with gate:
                self._active -= 1
                if not self._active:
                    gate.notify_all()
        if full:
            self._compact(fd)

    def covers(self, rel: str) -> bool:
        """True when a power loss could not leave `rel` older or torn: a record of it made
        by this process is durable in this journal, so a replay rewrites the file from
        that record (or a later one) whatever its bytes are.

        Until then the file itself is what a replay keeps (a compaction or the boot's
        recovery made it durable and dropped the records), so a writer must replace it
        by a new file and a rename (old or new after a crash on a journalling filesystem)
        instead of rewriting an inode in place, whose new bytes may reach the disk after
        the rename that shows them. Another process cannot compact the journal while this
        one has it open (it holds a shared flock), so what this process synced stays
        in it until its own compaction, which forgets everything.
        """
        with self._cv:
            first = self._first.get(rel)
            return first is not None and first <= self._synced

    def sync(self) -> None:
        """Make every append of this process durable (one fdatasync for all who wait)."""
        with self._cv:
            while self._synced < (target := self._written):
                if self._syncing:
                    self._cv.wait()
                    continue
                self._syncing = True
                fd = self._fd
                self._cv.release()
                try:
                    if fd is not None:
                        os.fdatasync(fd)
                finally:
                    self._cv.acquire()
                    self._syncing = False
                    self._cv.notify_all()
                self._synced = max(self._synced, target)

    def _compact(self, fd: int) -> None:
        """Truncate the journal once everything in it is durable anyway (filesystem sync)."""
        with self._alone() as alone:
            if not alone or os.lseek(fd, 0, os.SEEK_END) < COMPACT_AT:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_SH)  # another process is writing: next time
                return
            try:
                os.sync()
                os.ftruncate(fd, 0)
                os.fsync(fd)
                with self._cv:
                    self._synced = self._written
                    self._first.clear()  # the records are gone: the files are what counts
            finally:
                fcntl.flock(fd, fcntl.LOCK_SH)

    def close(self) -> None:
        with self._open_lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
