"""Where a fleet run's wall goes, from rotator's JSON log and the simulator's request log.

`bench_fleet` records one of these per run of `rotate --all`:

- `first_answer_s`: from launching the command to the simulator's first answer. That is
  start-up (imports, config, forking the workers) plus one round trip.
- `after_last_answer_s`: from the simulator's last answer to the command's exit.
- `slots_busy` (given the latency and `--concurrency`): the share of the request slots'
  time that held a request, from the first request's start (its answer less the
  latency) to the last answer: requests * latency / (concurrency * that span). 1.0 is
  every slot busy throughout; what is missing went to CPU waits between a rotation's
  requests and to the ends, where fewer rotations are left than slots.
- `rotation_ms`: one account's rotation, from its `run.started` line to its last line.
  The preflight listing comes before `run.started`, so it is not in this figure.
- `steps_ms`: for each kind of log line, the time since the same account's previous line
  (the median and the 90th percentile). A `run.transitioned` line is named by its
  `to_state`. `token.created` is the create call. `token.revoked` covers the pre-revoke
  listing and the revoke. `backend.staged` and `backend.promoted` are the file backend's
  writes. Under load, each figure also includes the wait for the interpreter lock and
  for the CPU.

Together they say whether the rest of the wall beyond the critical path is start-up,
per-rotation work, or the end. Nothing here measures: it reads what a run left behind.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["merge", "slots_busy", "step_gaps", "summarize"]


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 1),
            "p90": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 1),
            "count": len(ordered)}


def step_gaps(lines: Iterable[str]) -> tuple[dict[str, list[float]], list[float]]:
    """(ms since the account's previous line, per kind of line; each rotation's ms).

    Lines that are not JSON, or that carry no account and timestamp, are skipped: a log
    may hold the parent's own lines and a stray warning.
    """
    gaps: dict[str, list[float]] = defaultdict(list)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        account, stamp = event.get("account"), event.get("timestamp")
        if not isinstance(account, str) or not isinstance(stamp, str):
            continue
        at = _seconds(stamp)
        name = event.get("to_state") or event.get("event") or "?"
        if event.get("event") == "run.started":
            first[account] = at
        elif account in last:
            gaps[str(name)].append((at - last[account]) * 1000)
        last[account] = at
    spans = [(last[account] - started) * 1000 for account, started in first.items()]
    return dict(gaps), spans


def slots_busy(stamps: list[float], latency: float, concurrency: int) -> float | None:
    """The request slots' busy share between the first request and the last answer (see
    the module docstring); None without requests or latency."""
    if not stamps or latency <= 0 or concurrency < 1:
        return None
    span = max(stamps) - (min(stamps) - latency)
    return round(len(stamps) * latency / (concurrency * span), 3)


def summarize(log_path: Path, answered_at: list[str], launched: float,
              wall: float, *, latency: float = 0.0, concurrency: int = 0) -> dict[str, Any]:
    """One run's timeline (see the module docstring). `answered_at` holds the simulator's
    request-log timestamps; `launched` is the wall-clock time at launch."""
    with log_path.open(encoding="utf-8", errors="replace") as lines:
        gaps, spans = step_gaps(lines)
    stamps = sorted(_seconds(stamp) for stamp in answered_at)
    return {
        "first_answer_s": round(stamps[0] - launched, 3) if stamps else None,
        "after_last_answer_s": round(launched + wall - stamps[-1], 3) if stamps else None,
        "slots_busy": slots_busy(stamps, latency, concurrency),
        "rotation_ms": _spread(spans) if spans else None,
        "steps_ms": {name: _spread(values) for name, values in sorted(gaps.items())},
    }


def merge(timelines: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over several runs' timelines."""
    def mid(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 3) if present else None

    steps = sorted({name for t in timelines for name in t.get("steps_ms", {})})
    return {
        "first_answer_s": mid([t.get("first_answer_s") for t in timelines]),
        "after_last_answer_s": mid([t.get("after_last_answer_s") for t in timelines]),
        "slots_busy": mid([t.get("slots_busy") for t in timelines]),
        "rotation_ms": mid([(t.get("rotation_ms") or {}).get("median") for t in timelines]),
        "steps_ms": {name: mid([t["steps_ms"][name]["median"] for t in timelines
                                if name in t.get("steps_ms", {})]) for name in steps},
    }
