"""When an account's rotation is due: age, expiry, a weekly window, a per-account spread.

Plain functions over frozen values and an explicit `now`; nothing here reads a clock or
does I/O, so every decision is tested with a fake clock.

- `window` (e.g. `"Mon-Fri 02:00-05:00"`, several joined with `;`): a new rotation only
  *starts* inside one of these weekly UTC spans. A run already under way (a revoke owed
  after its grace, a resume after a crash) is never held back: finishing is always allowed.
  A token that would expire before the window next opens is rotated anyway (I1).
- `spread` (e.g. `"7d"`): each account's due date moves later by a stable offset in
  `[0, spread)` derived from a hash of its username, so accounts adopted on the same day
  come due on different days, and the same account always gets the same offset.
- `shard_of(username, n)`: the same kind of stable hash, for `--shard I/N`.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rotator.tables import format_time

__all__ = [
    "Due",
    "Window",
    "decide",
    "in_shard",
    "parse_shard",
    "parse_window",
    "shard_of",
    "spread_offset",
]

_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEK = 7 * 24 * 60  # minutes
_DAY = 24 * 60
_SPAN_RE = re.compile(
    r"^(?:(?P<days>[A-Za-z][A-Za-z,\- ]*?)\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)


@dataclass(frozen=True, slots=True)
class Window:
    """Weekly UTC spans as minute offsets from Monday 00:00: `start <= m < end`.

    `end` may pass the end of the week (a Sunday 23:00-01:00 span): `contains` also
    tries the minute one week later.
    """

    text: str
    spans: tuple[tuple[int, int], ...]

    def contains(self, when: datetime) -> bool:
        when = _utc(when)
        minute = _week_minute(when)
        return any(s <= m < e for s, e in self.spans for m in (minute, minute + _WEEK))

    def next_open(self, when: datetime) -> datetime:
        """`when` itself if the window is open then, else the next instant it opens."""
        if self.contains(when):
            return when
        when = _utc(when)
        monday = _week_start(when)
        candidates = []
        for start, _ in self.spans:
            at = monday + timedelta(minutes=start)
            if at < when:
                at += timedelta(days=7)
            candidates.append(at)
        return min(candidates)


@functools.lru_cache(maxsize=64)
def parse_window(text: str) -> Window:
    """Parse `"Mon-Fri 02:00-05:00"`, `"Sat,Sun 22:00-02:00"`, `"03:00-04:00"` (every day).

    Several spans are joined with `;`. Day ranges may wrap (`Fri-Mon`); a span whose end is
    not after its start runs past midnight into the next day. Raises ValueError saying
    what is wrong (config validation turns it into `defaults.window: ...`).
    """
    spans: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(";")):
        match = _SPAN_RE.match(part)
        if not match:
            raise ValueError(
                f"{part!r} is not a window like 'Mon-Fri 02:00-05:00' "
                "(days optional, times HH:MM in UTC, several joined with ';')"
            )
        start, end = _minute(match["start"], part), _minute(match["end"], part, end=True)
        if start == end:
            raise ValueError(f"{part!r}: the window is empty (start equals end)")
        length = end - start if end > start else end + _DAY - start
        for day in _days(match["days"], part) if match["days"] else range(7):
            spans.append((day * _DAY + start, day * _DAY + start + length))
    return Window(text=text, spans=tuple(sorted(set(spans))))


def _minute(clock: str, part: str, *, end: bool = False) -> int:
    hours, minutes = (int(x) for x in clock.split(":"))
    if end and (hours, minutes) == (24, 0):
        return _DAY
    if hours > 23 or minutes > 59:
        raise ValueError(f"{part!r}: {clock} is not a time of day (00:00-23:59, or 24:00 as end)")
    return hours * 60 + minutes


def _days(spec: str, part: str) -> list[int]:
    days: list[int] = []
    for item in (i.strip() for i in spec.split(",")):
        ends = [_day(d.strip(), part) for d in item.split("-")]
        if len(ends) == 1:
            days.append(ends[0])
        elif len(ends) == 2:
            first, last = ends
            days.extend((first + i) % 7 for i in range((last - first) % 7 + 1))
        else:
            raise ValueError(f"{part!r}: {item!r} is not a day or a day range like Mon-Fri")
    return sorted(set(days))


def _day(name: str, part: str) -> int:
    low = name.lower()
    for index, full in enumerate(_FULL_DAYS):
        if len(low) >= 3 and full.startswith(low):
            return index
    raise ValueError(f"{part!r}: unknown day {name!r} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)")


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo is not None else when


def _week_start(when: datetime) -> datetime:
    """Monday 00:00 UTC of `when`'s week (in UTC: windows are UTC whatever `when`'s offset)."""
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=when.weekday())


def _week_minute(when: datetime) -> float:
    return (when - _week_start(when)).total_seconds() / 60


def _hash(purpose: str, username: str) -> int:
    digest = hashlib.sha256(f"rotator-{purpose}:{username.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def spread_offset(username: str, spread: timedelta) -> timedelta:
    """The account's stable offset in `[0, spread)`, in whole seconds (zero without spread)."""
    seconds = int(spread.total_seconds())
    if seconds <= 0:
        return timedelta(0)
    return timedelta(seconds=_hash("spread", username) % seconds)


def shard_of(username: str, shards: int) -> int:
    """Which of `shards` shards an account belongs to (stable across hosts and releases)."""
    return _hash("shard", username) % shards


def in_shard(username: str, shard: tuple[int, int] | None) -> bool:
    return shard is None or shard_of(username, shard[1]) == shard[0]


def parse_shard(text: str) -> tuple[int, int]:
    """`"I/N"` -> (I, N) with `0 <= I < N`; raises ValueError naming what is wrong."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not I/N (e.g. 0/4: the first of four shards)")
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise ValueError(f"{text!r}: N must be at least 1")
    if index >= count:
        raise ValueError(f"{text!r}: I must be between 0 and N-1 ({count - 1})")
    return index, count


@dataclass(frozen=True, slots=True)
class Due:
    """The decision: `due` now or not, why, and `at` (when it was or will be due; None: now)."""

    due: bool
    reason: str
    at: datetime | None = None


def decide(
    *,
    account: str,
    created_ts: str | None,
    expire_at: str | None,
    has_token: bool,
    now: datetime,
    rotate_after: timedelta,
    rotate_before_expiry: timedelta,
    window: str | None = None,
    spread: timedelta = timedelta(0),
    force: bool = False,
) -> Due:
    """Is a new rotation of `account` due at `now`? See the module docstring for the rules."""
    if force:
        return Due(True, "forced", now)
    base = _base_due(
        account, created_ts, expire_at, has_token, now, rotate_after, rotate_before_expiry, spread
    )
    if window is None:
        return base
    win = parse_window(window)
    if not base.due:
        assert base.at is not None
        opens = win.next_open(base.at)
        if expire_at and opens >= datetime.fromisoformat(expire_at):
            return base  # at base.at it is due whatever the window says (see below)
        return Due(False, f"not due until {_iso(opens)} (window {window})", opens)
    if win.contains(now):
        return base
    opens = win.next_open(now)
    if expire_at and opens >= datetime.fromisoformat(expire_at):
        return Due(True, f"{base.reason}; it expires before the window ({window}) opens", base.at)
    waiting = f"{base.reason}; waiting for the window {window} (opens {_iso(opens)})"
    return Due(False, waiting, opens)


def _base_due(
    account: str,
    created_ts: str | None,
    expire_at: str | None,
    has_token: bool,
    now: datetime,
    rotate_after: timedelta,
    rotate_before_expiry: timedelta,
    spread: timedelta,
) -> Due:
    if not has_token:
        return Due(True, "no managed token yet")
    expiry_due = datetime.fromisoformat(expire_at) - rotate_before_expiry if expire_at else None
    if expiry_due is not None and expiry_due <= now:
        return Due(True, f"token expires at {format_time(expire_at)}", expiry_due)
    if not created_ts:
        return Due(True, "current token's age is unknown")
    created = datetime.fromisoformat(created_ts)
    offset = spread_offset(account, spread)
    age_due = created + rotate_after + offset
    if age_due <= now:
        extra = f" + spread {_in_days(offset)}" if offset else ""
        age, after = _in_days(now - created), _in_days(rotate_after)
        reason = f"token is {age} old (rotate_after {after}{extra})"
        return Due(True, reason, age_due)
    at = min(age_due, expiry_due) if expiry_due is not None else age_due
    return Due(False, f"not due until {_iso(at)}", at)


def _iso(when: datetime) -> str:
    return format_time(when)  # the one time format every output uses


def _in_days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f}d"
