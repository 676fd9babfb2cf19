"""Replacing a state document without creating a file: the spare inode, exchanged into place.

On the ext4 these stores live on, creating a file (and freeing the inode a rename replaces)
costs far more kernel CPU than writing it: ~160 us for temp file + write + rename against
~10 us for writing an existing file (docs/performance.md, "File creations per save"). A
rotation replaces ~16 state documents, so `write_via_spare` keeps one *spare* file per
document slot and swaps it in:

    1. open the spare (a hidden `.<name>.spare` next to the document), take `flock(LOCK_EX)`
       on it (non-blocking: if a reader holds it, fall back to a new file, see below);
    2. write the new bytes at offset 0 and truncate to their length, so the spare holds
       exactly the new document;
    3. `renameat2(spare, document, RENAME_EXCHANGE)`: atomically, the document's name now
       holds the new bytes and the spare's name the previous inode, reused next time;
       then drop the lock.

A reader that opens the document by name sees the old inode or the new one, each whole,
exactly as with a rename. The one new case is a reader that opened the document before an
exchange and reads after the *next* write began overwriting that (now spare) inode: it
would see the bytes being replaced. `read_whole` closes that gap: it takes `flock(LOCK_SH)`
(non-blocking) on what it opened before reading, so it never reads an inode a writer is
rewriting — a writer holds LOCK_EX on exactly the inode it overwrites until that inode is
the document again, so a reader refused the lock either opened a spare being rewritten
(the name has moved on: it opens the name again) or the document just swapped in, whole
(it waits the few microseconds until the writer lets go). It never reads a version before
it is the document, nor an older one after a newer. A writer never waits for readers: a
spare a reader still has locked is left alone and the document is replaced the old way
(temp file + rename).

Crashes: a SIGKILL during step 2 leaves a partial spare and the document untouched; step 3
is one atomic rename (the lock dies with the process). Nothing here is fsynced: the file
store's journal makes documents durable at barriers and replays them after a power loss
(rotator/state/journal.py), which overwrites the document by temp file + rename, never
through the spare. A power loss is the one case where rewriting an inode in place differs
from a new file: the exchange may reach the disk before the bytes rewritten into the
spare (a journalling filesystem orders a new file's data before the rename that shows it,
not an overwrite's), leaving the document torn or at an old version. So the file store
goes through the spare only once `Journal.covers` the document — a record of it is durable
in the journal, and the replay rewrites the file from it whatever the file holds; a
document's first write since the journal began or was compacted is a new file and a rename.

Writers of one document must not run concurrently (two could exchange in turn and leave
the document older than the last write). The file store writes every document of an
account under that account's `flock`, which gives exactly that.

Without `renameat2` (not Linux, an old glibc, a filesystem that refuses RENAME_EXCHANGE)
the spare is renamed over the document (no inode saved, still atomic).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable

from rotator.util.fsutil import read_fd

__all__ = ["read_whole", "write_via_spare"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_SPARE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_READ_WAIT = 2.0  # seconds a reader waits for a writer to let go of a document (read_whole)

# renameat2 through ctypes, loaded at the first write (ctypes costs ~1.5 ms to import);
# False once it is known to be unavailable here.
_exchange: Callable[[bytes, bytes], int] | bool | None = None


def _load_exchange() -> Callable[[bytes, bytes], int] | bool:
    global _exchange
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
        call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
        call.restype = ctypes.c_int

        def exchange(old: bytes, new: bytes) -> int:
            if call(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_EXCHANGE) == 0:
                return 0
            return ctypes.get_errno() or errno.EIO

        _exchange = exchange
    except (OSError, AttributeError):
        _exchange = False
    return _exchange


def write_via_spare(directory: str, name: str, spare: str, data: bytes) -> bool:
    """Make `directory/name` hold `data` by rewriting `spare` and exchanging it into place.

    False (nothing changed) when a reader holds the spare: the caller replaces the
    document by a new file instead. Raises OSError from the filesystem; the document is
    intact when it does.
    """
    global _exchange
    exchange = _exchange if _exchange is not None else _load_exchange()
    target = f"{directory}/{name}"
    fd = os.open(spare, _SPARE_FLAGS, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a reader is on this inode (it was the document before)
        view = memoryview(data)
        done = 0
        while done < len(data):
            done += os.pwrite(fd, view[done:], done)
        os.ftruncate(fd, len(data))
        # Swapped in while still locked: a reader that opened this inode back when it was
        # the document reads it only once it is the document again (never ahead of it).
        if exchange is not False:
            assert callable(exchange)
            err = exchange(os.fsencode(spare), os.fsencode(target))
            if err == 0:
                return True
            if err not in (errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise OSError(err, os.strerror(err), target)
            if err != errno.ENOENT:  # this filesystem or kernel cannot exchange
                _exchange = False
        # The document's first write (or no exchange here): the spare becomes the document.
        os.rename(spare, target)
        return True
    finally:
        os.close(fd)  # drops the lock


def read_whole(path: str) -> bytes:
    """A document's bytes, never read while a writer rewrites the inode (see the module).

    open, `flock(LOCK_SH | LOCK_NB)`, read until EOF, close. When the lock is refused:
    if the inode opened is no longer the document, a writer is rewriting it as a spare,
    so open the name again (it is the other inode by then); if it still is the document,
    its writer has just swapped it in, whole, and lets go at once: wait for that, and
    read it anyway if the writer stalls there (it holds the account's lock too, so
    nothing rewrites this inode until it lets go). FileNotFoundError as `open`.
    """
    deadline: float | None = None
    while True:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                opened, now_there = os.fstat(fd), os.stat(path)
                if (opened.st_ino, opened.st_dev) != (now_there.st_ino, now_there.st_dev):
                    continue  # a spare being rewritten: the name has moved on
                now = time.monotonic()
                if deadline is None:
                    deadline = now + _READ_WAIT
                elif now >= deadline:
                    return read_fd(fd)
            else:
                return read_fd(fd)
        finally:
            os.close(fd)
        time.sleep(0.0005)

