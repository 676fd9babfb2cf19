"""`[state] keep_runs`: how many finished runs to keep ("90d" or a count per account).

It lives with the config because the config validates it; pruning itself is
rotator/ops/retention.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rotator.durations import format_duration, parse_duration


@dataclass(frozen=True, slots=True)
class Keep:
    """What to keep: finished runs younger than `age`, or the newest `count` per account."""

    age: timedelta | None = None
    count: int | None = None

    def describe(self) -> str:
        if self.age is not None:
            return f"finished runs younger than {format_duration(self.age)}"
        return f"the {self.count} newest finished runs per account"


def parse_keep(value: object) -> Keep:
    """`"90d"` (an age) or `20` / `"20"` (a count per account); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected an age like 90d or a count like 20")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        count = int(value)
        if count < 1:
            raise ValueError("a count must be at least 1 (the last run is always kept)")
        return Keep(count=count)
    try:
        age = parse_duration(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an age like 90d or a count like 20") from None
    if age < timedelta(hours=1):
        raise ValueError("an age must be at least 1h")
    return Keep(age=age)
