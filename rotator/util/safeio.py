"""Output streams that a dead reader cannot break: watching a run never stops it.

`rotator rotate --all 2>&1 | head`, a `logger` that died in the cron wrapper, a closed
terminal: the reader of stdout or stderr goes away and the next write raises
`BrokenPipeError` (Python ignores SIGPIPE). Raised from a log call inside a step, that
would stop a run between promote and revoke. `SafeStream` wraps a text stream and, on the
first broken pipe (or a stream closed under it), points the file descriptor at
/dev/null and drops everything after it: the run goes on, and the interpreter's final
flush at exit does not fail either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from typing import Any, TextIO

__all__ = ["SafeStream", "is_broken_pipe"]

_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.EBADF})


def is_broken_pipe(exc: BaseException) -> bool:
    """True for the errors a vanished reader causes (not for a full disk, say)."""
    if isinstance(exc, BrokenPipeError | ConnectionResetError):
        return True
    if isinstance(exc, OSError) and exc.errno in _GONE:
        return True
    return isinstance(exc, ValueError) and "closed file" in str(exc)


class SafeStream:
    """A text stream whose writes and flushes never raise for a reader that went away.

    Any other OSError (a full disk) is swallowed too: output is a report, never a reason
    to abandon a rotation half-way. `broken` tells whether anything was dropped.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:
            self._give_up(exc)
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._give_up(exc)

    def isatty(self) -> bool:
        try:
            return not self.broken and self._stream.isatty()
        except (AttributeError, ValueError, OSError):
            return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _give_up(self, exc: BaseException) -> None:
        if isinstance(exc, ValueError) and not is_broken_pipe(exc):
            raise exc
        with self._lock:
            if self.broken:
                return
            self.broken = True
            # Whatever is still buffered would fail again at exit ("Exception ignored ...
            # BrokenPipeError", exit status 120): send the descriptor to /dev/null.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                fd = self._stream.fileno()
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
