"""Human durations (`300s`, `15m`, `12h`, `30d`, `2w`) to and from `timedelta`."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["MAX_DURATION", "format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
# Far beyond any sane ttl, grace or lease, and far below what a datetime can add up to
# (`"99999999999999d"` would overflow timedelta; `"999999999d"` would overflow a date).
MAX_DURATION = timedelta(days=3650)
_MAX_TEXT = "3650d (about 10 years)"


def parse_duration(value: object) -> timedelta:
    """Parse `"90d"`-style strings (or a plain number of seconds) into a timedelta.

    Raises ValueError with the accepted forms when the value is not understood, and with
    the bound when it is longer than `MAX_DURATION` (3650d).
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 300s, 15m, 12h or 30d")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return _bounded(value, str(value))
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return _bounded(int(match.group(1)) * _UNITS[match.group(2)], value.strip())
    raise ValueError(f"{value!r} is not a duration like 300s, 15m, 12h, 30d or 2w")


def _bounded(seconds: int, shown: str) -> timedelta:
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{shown!r} is longer than {_MAX_TEXT}, the longest duration accepted")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The largest whole unit that represents `delta` exactly (`86400s` -> `1d`)."""
    seconds = int(delta.total_seconds())
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
