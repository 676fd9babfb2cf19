"""The scheduled pass asks which accounts have nothing to do first (reads, several at once),
then rotates the rest in order; what it reports is what `rotate` alone would report."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rotator.aws_lambda.errors import RotationError
from rotator.aws_lambda.scheduled_pass import scheduled
from rotator.engine.outcome import Outcome
from rotator.errors import StateError


class FakeClient:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def active_accounts(self) -> list[dict[str, Any]]:
        self.calls.append("probe")
        return []


class FakeEngine:
    """idle answers from `records`; rotate says 'completed', or raises for a broken store."""

    def __init__(self, records: dict[str, str], broken: set[str]) -> None:
        self.calls: list[str] = []
        self.client = FakeClient(self.calls)
        self.records = records
        self.broken = broken
        self.lock = threading.Lock()

    def account_record(self, name: str) -> str:
        with self.lock:
            self.calls.append(f"read {name}")
        if name in self.broken:
            raise RuntimeError("the store's read failed")
        return self.records[name]

    def idle(self, name: str, *, trigger: str, record: str) -> Outcome | None:
        assert trigger == "schedule"
        return Outcome(name, "not_due", f"{record} not due") if record == "fresh" else None

    def rotate(self, name: str, *, trigger: str) -> Outcome:
        self.calls.append(f"rotate {name}")
        if name in self.broken:
            raise StateError(f"{name}: cannot read its record")
        return Outcome(name, "completed", "rotated")


def test_idle_accounts_are_answered_from_one_read_and_the_rest_rotated_in_order() -> None:
    engine = FakeEngine({"a": "fresh", "b": "due", "c": "fresh", "d": "due"}, broken=set())
    seen: dict[str, Any] = {}
    out = scheduled(engine, ["a", "b", "c", "d"], seen=seen)  # type: ignore[arg-type]
    assert [(r["account"], r["result"]) for r in out["results"]] == [
        ("a", "not_due"), ("b", "completed"), ("c", "not_due"), ("d", "completed"),
    ]
    assert engine.calls[0] == "probe"  # the admin-token probe before anything else
    assert sorted(engine.calls[1:5]) == ["read a", "read b", "read c", "read d"]
    assert engine.calls[5:] == ["rotate b", "rotate d"]
    assert seen == {"a": "fresh", "c": "fresh"}  # only what the pass left unchanged


def test_a_failed_read_goes_the_rotate_way_and_is_reported_there() -> None:
    engine = FakeEngine({"a": "fresh"}, broken={"b"})
    with pytest.raises(RotationError, match="1 of 2 account"):
        scheduled(engine, ["a", "b"])  # type: ignore[arg-type]
    assert engine.calls[-1] == "rotate b"
