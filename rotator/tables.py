"""Plain tables for people, 80 columns wide, and the one time format every output uses.

`plain_table()` aligns columns with spaces; when a table would be wider than `width`
(80: a default terminal, cron mail), the widest wrappable columns are narrowed and their
cells wrapped onto continuation lines, while `keep` columns (ids a person copies into
the next command) are never cut. `format_time()` is the single human time format:
RFC 3339 in UTC to the second, `2026-11-29T23:43:16Z`. `short_id()` is the first 8
characters of a token id, as tables show it (`--json` always carries the full id).
"""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["WIDTH", "fit_widths", "format_time", "plain_table", "short_id"]

WIDTH = 80
_GAP = 2
_MIN = 6


def format_time(value: str | datetime | None, default: str = "-") -> str:
    """`2026-11-29T23:43:16Z` for an ISO string or datetime (naive means UTC); else default."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_id(token_id: str | None) -> str:
    return token_id[:8] if token_id else "-"


def fit_widths(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int = WIDTH,
    keep: Collection[int] = (),
) -> list[int]:
    """Column widths that fit `width` if they can: the widest wrappable column gives first."""
    natural = [len(h) for h in header]
    longest_word = [max([_MIN, *(len(p) for p in h.split())]) for h in header]
    for row in rows:
        natural = [max(w, len(str(c))) for w, c in zip(natural, row, strict=True)]
        longest_word = [
            max([w, *(len(p) for p in str(c).split())])
            for w, c in zip(longest_word, row, strict=True)
        ]
    # First wrap between words only (a time or an id stays whole); break words only if
    # that is not enough.
    widths = list(natural)
    excess = sum(widths) + _GAP * (len(widths) - 1) - width
    for floor in (longest_word, [_MIN] * len(header)):
        floors = [natural[i] if i in keep else min(natural[i], f) for i, f in enumerate(floor)]
        while excess > 0:
            shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
            if not shrinkable:
                break
            i = max(shrinkable, key=lambda j: (widths[j], j))
            widths[i] -= 1
            excess -= 1
    return widths


def plain_table(
    out: TextIO,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int = WIDTH,
    keep: Collection[int] = (),
    notes: Sequence[str | None] = (),
) -> None:
    """Columns aligned with spaces, wrapped to fit `width`; stable for scripts and diffs.

    `notes[i]`, when given, is printed under row i, indented and wrapped (details that
    would not fit as a column).
    """
    # Redact before wrapping: a secret cut onto two lines is no longer one string, and the
    # redactor on stdout (RedactingStream) would let each piece through.
    from rotator.log import redact

    rows = [[redact(str(c)) for c in row] for row in rows]
    notes = [redact(n) if n else n for n in notes]
    widths = fit_widths(header, rows, width=width, keep=keep)
    for i, row in enumerate([header, *rows]):
        cells = [_wrap(str(c), w) for c, w in zip(row, widths, strict=True)]
        for n in range(max(len(c) for c in cells)):
            parts = [
                (c[n] if n < len(c) else "").ljust(w)
                for c, w in zip(cells, widths, strict=True)
            ]
            out.write((" " * _GAP).join(parts).rstrip() + "\n")
        note = notes[i - 1] if 0 < i <= len(notes) else None
        if note:
            for line in _wrap(note, width - _GAP):
                out.write(" " * _GAP + line + "\n")


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]
