"""Human durations (`300s`, `15m`, `12h`, `30d`, `2w`) to and from `timedelta`."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(value: object) -> timedelta:
    """Parse `"90d"`-style strings (or a plain number of seconds) into a timedelta.

    Raises ValueError with the accepted forms when the value is not understood.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 300s, 15m, 12h or 30d")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(f"{value!r} is not a duration like 300s, 15m, 12h, 30d or 2w")


def format_duration(delta: timedelta) -> str:
    """The largest whole unit that represents `delta` exactly (`86400s` -> `1d`)."""
    seconds = int(delta.total_seconds())
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
