"""The two bounds of one HTTP attempt, for every client rotator has: a wall-clock
deadline and a size cap on the answer.

httpx's timeouts, and urllib3's, are per socket operation. A server that sends one byte
every few seconds never trips them, and an endless body is read to its end. So each
attempt runs inside `deadline(seconds)`, and each client's sockets cut every operation's
timeout to `left(...)` of it:
- `rotator.util.httpbound` does this for httpx;
- `rotator.motherduck.reads` does it for urllib3, for the Lambda's GETs.
Answers are read through `capped(chunks, limit)`.

No HTTP library is imported here: the Lambda's read path loads this without httpx.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterable, Iterator
from typing import Final

__all__ = ["TooLarge", "capped", "deadline", "left", "remaining"]

_DEADLINE: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "rotator_http_deadline", default=None
)


class TooLarge(ValueError):
    """The body went past the size cap; the rest was not read."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every network operation inside the block ends `seconds` from now at the latest."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left of the current attempt (0 or less once it is over); None outside one."""
    end = _DEADLINE.get()
    return None if end is None else end - time.monotonic()


def left(timeout: float | None, error: type[Exception] = TimeoutError) -> float | None:
    """`timeout` cut to what is left of the current attempt's deadline (unchanged outside
    one); raises `error` once nothing is left."""
    rest = remaining()
    if rest is None:
        return timeout
    if rest <= 0:
        raise error("the attempt's deadline passed")
    return rest if timeout is None else min(timeout, rest)


def capped(chunks: Iterable[bytes], limit: int) -> bytes:
    """The chunks of an answer's body joined; TooLarge as soon as they pass `limit` bytes
    (the rest is not read)."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the answer is larger than {limit} bytes")
    return bytes(body)
