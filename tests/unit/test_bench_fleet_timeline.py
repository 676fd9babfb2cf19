"""benchmarks/fleet_timeline.py: a fleet run's timeline from its JSON log and request log.

Made-up log lines with known timestamps; nothing is measured and no timing is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.benchmarks import load_benchmark

timeline = load_benchmark("fleet_timeline.py", "fleet_timeline")


def _line(account: str | None, ms: float, event: str, **extra: str) -> str:
    stamp = f"2026-12-07T18:00:00.{int(ms * 1000):06d}Z"
    doc: dict[str, object] = {"event": event, "timestamp": stamp}
    if account is not None:
        doc["account"] = account
    return json.dumps({**doc, **extra})


def _rotation(account: str, start_ms: float, staged_after: float) -> list[str]:
    return [
        _line(account, start_ms, "run.started"),
        _line(account, start_ms + 1, "run.transitioned", to_state="creating"),
        _line(account, start_ms + 51, "token.created"),
        _line(account, start_ms + 51 + staged_after, "backend.staged"),
        _line(account, start_ms + 200, "run.transitioned", to_state="completed"),
    ]


def test_step_gaps_are_per_account_and_name_transitions_by_state() -> None:
    lines = [*_rotation("a", 0, 10), *_rotation("b", 5, 30)]
    lines.insert(3, "not json at all")
    lines.insert(4, _line(None, 60, "fleet.progress"))  # the parent's own line: no account
    gaps, spans = timeline.step_gaps(lines)
    assert sorted(gaps["token.created"]) == pytest.approx([50, 50], abs=0.01)
    assert sorted(gaps["backend.staged"]) == pytest.approx([10, 30], abs=0.01)
    assert sorted(gaps["creating"]) == pytest.approx([1, 1], abs=0.01)
    assert "run.started" not in gaps and "fleet.progress" not in gaps
    assert sorted(spans) == pytest.approx([200, 200], abs=0.01)


def test_summarize_places_the_first_and_last_answer_against_launch_and_exit(
    tmp_path: Path,
) -> None:
    log = tmp_path / "rotate.log"
    log.write_text("\n".join([*_rotation("a", 100, 10), *_rotation("b", 120, 20)]) + "\n")
    launched = timeline._seconds("2026-12-07T18:00:00.000000Z")
    answers = ["2026-12-07T18:00:00.150000Z", "2026-12-07T18:00:00.320000Z"]
    got = timeline.summarize(log, answers, launched, wall=0.4, latency=0.05, concurrency=2)
    assert got["first_answer_s"] == pytest.approx(0.15)
    # 2 requests of 50 ms over 2 slots, from 0.10 s (the first answer less 50 ms) to 0.32 s.
    assert got["slots_busy"] == pytest.approx(0.1 / (2 * 0.22), abs=0.001)
    assert got["after_last_answer_s"] == pytest.approx(0.08)
    assert got["rotation_ms"]["median"] == pytest.approx(200, abs=0.1)
    assert got["steps_ms"]["backend.staged"]["median"] == pytest.approx(15, abs=0.1)
    assert got["steps_ms"]["backend.staged"]["count"] == 2


def test_slots_busy_is_the_share_of_slot_time_that_held_a_request() -> None:
    every = [0.05 * i for i in range(1, 11)]  # one slot, one request after another
    assert timeline.slots_busy(every, 0.05, 1) == pytest.approx(1.0)
    assert timeline.slots_busy(every, 0.05, 2) == pytest.approx(0.5)
    assert timeline.slots_busy([0.05, 0.5], 0.05, 1) == pytest.approx(0.2)
    assert timeline.slots_busy([], 0.05, 1) is None
    assert timeline.slots_busy(every, 0.0, 1) is None


def test_merge_takes_each_figures_median_and_skips_what_a_run_lacks() -> None:
    runs = [
        {"first_answer_s": 0.1, "after_last_answer_s": 0.03, "slots_busy": 0.8,
         "rotation_ms": {"median": 250},
         "steps_ms": {"backend.staged": {"median": 10}}},
        {"first_answer_s": 0.3, "after_last_answer_s": None, "rotation_ms": None,
         "steps_ms": {}},
        {"first_answer_s": 0.2, "after_last_answer_s": 0.05, "rotation_ms": {"median": 270},
         "steps_ms": {"backend.staged": {"median": 20}, "token.created": {"median": 55}}},
    ]
    merged = timeline.merge(runs)
    assert merged["first_answer_s"] == pytest.approx(0.2)
    assert merged["after_last_answer_s"] == pytest.approx(0.04)
    assert merged["slots_busy"] == pytest.approx(0.8)
    assert merged["rotation_ms"] == pytest.approx(260)
    assert merged["steps_ms"] == {"backend.staged": pytest.approx(15),
                                  "token.created": pytest.approx(55)}
