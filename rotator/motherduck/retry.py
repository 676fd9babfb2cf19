"""The retry policy of the MotherDuck client: how often, how long and how long to wait.

Its one job is the arithmetic of retrying: the jittered exponential backoff, the attempt
count and overall deadline (`RetryPolicy`), what each scheduled retry reports
(`RetryEvent`) and how long a server's Retry-After header asks us to wait. It sends
nothing and logs nothing; `rotator.motherduck.client` decides when to retry and applies it.

A small policy object rather than stamina, because stamina can neither report the real
wait of each retry to a per-client hook nor keep a Retry-After wait inside the deadline.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["EVENT_KEYS", "RetryEvent", "RetryPolicy", "retry_after"]

EVENT_KEYS: Final = ("method", "route", "attempt", "wait_seconds", "reason")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One scheduled retry: `attempt` failed for `reason`; the next starts after the wait."""

    method: str
    route: str
    attempt: int
    wait_seconds: float
    reason: str


class _VirtualTime:
    """A clock that `sleep` moves forward instantly: deadline arithmetic without waiting."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset = 0.0

    def sleep(self, seconds: float) -> None:
        self._offset += max(seconds, 0.0)

    def clock(self) -> float:
        return time.monotonic() + self._offset


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry: jittered exponential backoff, count AND deadline.

    `timeout` is the whole budget in seconds from the first attempt (Lambda passes its
    remaining time); a retry whose wait would end past it is not scheduled, and each
    attempt's HTTP timeout is trimmed to what is left (at least one second).
    """

    attempts: int = 4
    wait_initial: float = 0.25
    wait_max: float = 8.0
    wait_jitter: float = 0.25
    timeout: float = 30.0
    retry_after_cap: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.timeout <= 0 or min(self.wait_initial, self.wait_max, self.wait_jitter) < 0:
            raise ValueError("RetryPolicy.timeout must be positive and waits not negative")

    @classmethod
    def no_wait(cls, attempts: int = 4) -> RetryPolicy:
        """For tests: the same waits are computed and reported, but time only pretends."""
        virtual = _VirtualTime()
        return cls(attempts=attempts, sleep=virtual.sleep, clock=virtual.clock)

    def next_wait(self, attempt: int, asked: float | None, start: float) -> float | None:
        """The wait before the attempt after failed attempt number `attempt`, or None when
        there is none: the attempts are used up or the wait would end past the deadline.

        `asked`: the wait the server asked for (a capped Retry-After), else the backoff's.
        `start`: `clock()` when the first attempt began.
        """
        if attempt >= self.attempts:
            return None
        wait = self.backoff(attempt) if asked is None else asked
        if self.clock() - start + wait >= self.timeout:
            return None
        return wait

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based), jittered and capped."""
        exponential = self.wait_initial * 2.0 ** (attempt - 1)
        return min(self.wait_max, exponential + random.uniform(0, self.wait_jitter))


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
