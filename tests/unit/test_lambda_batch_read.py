"""A scheduled pass over a store that reads many records at once (DynamoDB's BatchGetItem):
one batch read, then a single read only for an account the batch did not answer."""

from __future__ import annotations

from typing import Any

from rotator.aws_lambda.scheduled_pass import scheduled
from rotator.engine.outcome import Outcome
from rotator.engine.runrecord import AccountRecord


class BatchStore:
    def __init__(self, answered: set[str], broken: bool = False) -> None:
        self.answered = answered
        self.broken = broken
        self.batches: list[list[str]] = []

    def load_accounts(self, names: list[str]) -> dict[str, Any]:
        self.batches.append(list(names))
        if self.broken:
            raise RuntimeError("the batch read failed")
        return {name: None for name in names if name in self.answered}


class Engine:
    def __init__(self, store: BatchStore) -> None:
        self.store = store
        self.calls: list[str] = []
        self.client = self

    def active_accounts(self) -> list[dict[str, Any]]:
        self.calls.append("probe")
        return []

    def account_record(self, name: str) -> AccountRecord:
        self.calls.append(f"read {name}")
        return AccountRecord.from_doc(None, name)

    def idle(self, name: str, *, trigger: str, record: AccountRecord) -> Outcome | None:
        assert isinstance(record, AccountRecord) and record.account == name
        return Outcome(name, "not_due", "not due")

    def rotate(self, name: str, *, trigger: str) -> Outcome:
        raise AssertionError("nothing is due")


def test_one_batch_read_then_single_reads_only_for_the_unanswered() -> None:
    engine = Engine(BatchStore(answered={"a", "b", "c"}))
    seen: dict[str, Any] = {}
    out = scheduled(engine, ["a", "b", "c", "d"], seen=seen)  # type: ignore[arg-type]
    assert [r["result"] for r in out["results"]] == ["not_due"] * 4
    assert engine.store.batches == [["a", "b", "c", "d"]]
    assert engine.calls == ["probe", "read d"]
    assert set(seen) == {"a", "b", "c", "d"}


def test_a_failed_batch_read_falls_back_to_single_reads() -> None:
    engine = Engine(BatchStore(answered=set(), broken=True))
    out = scheduled(engine, ["a", "b"])  # type: ignore[arg-type]
    assert [r["result"] for r in out["results"]] == ["not_due", "not_due"]
    assert sorted(engine.calls[1:]) == ["read a", "read b"]


def test_one_account_is_read_alone() -> None:
    engine = Engine(BatchStore(answered={"a"}))
    scheduled(engine, ["a"])  # type: ignore[arg-type]
    assert engine.store.batches == []
    assert engine.calls == ["probe", "read a"]


def test_a_role_without_batch_get_item_is_asked_once() -> None:
    """AccessDenied on BatchGetItem: StateError naming the action, and no second request."""
    import pytest
    from botocore.exceptions import ClientError

    from rotator.errors import StateError
    from rotator.state.dynamodb import DynamoDBStore

    class Denying:
        calls = 0

        def batch_get_item(self, **kwargs: Any) -> Any:
            Denying.calls += 1
            error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
            raise ClientError(error, "BatchGetItem")  # type: ignore[arg-type]

    store = DynamoDBStore("t", client=Denying(), host="h")
    for _ in range(2):
        with pytest.raises(StateError, match="BatchGetItem"):
            store.load_accounts(["a", "b"])
    assert Denying.calls == 1
