"""DynamoDBStore.load_accounts against moto's server: the batch read a scheduled pass makes.

It must answer exactly what one `load_account` per account answers, leave out what it
cannot vouch for (an item this rotator does not read) so the caller reads it alone, and
fail as a StateError when the table is not there.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from rotator.errors import StateError
from rotator.state.dynamodb import BATCH_KEYS, DynamoDBStore, create_table
from tests.support.simulator_fixtures import unique_username


@pytest.fixture
def store(aws: Any) -> DynamoDBStore:
    name = f"rotator-{unique_username()}"
    create_table(name, region=aws.region, endpoint_url=aws.endpoint_url)
    return DynamoDBStore(name, region=aws.region, endpoint_url=aws.endpoint_url)


def write(store: DynamoDBStore, account: str, version: int = 1) -> None:
    lease = store.acquire_lease(account, owner="test", ttl=timedelta(minutes=5))
    store.save(lease, account={"account": account, "version": version})
    store.release_lease(lease)


def test_batch_answers_what_single_reads_answer(store: DynamoDBStore) -> None:
    """Present, absent and differently-cased names: as load_account answers each."""
    write(store, "svc_a")
    write(store, "svc_b", version=1)
    names = ["svc_a", "svc_b", "svc_never", "SVC_A"]
    assert store.load_accounts(names) == {name: store.load_account(name) for name in names}
    assert store.load_accounts(names)["svc_never"] is None


def test_more_keys_than_one_batch(store: DynamoDBStore) -> None:
    """Past BatchGetItem's 100 keys the read is split; every account is answered."""
    names = [f"svc_{i:03d}" for i in range(BATCH_KEYS + 5)]
    for name in names[:: BATCH_KEYS // 2]:
        write(store, name)
    found = store.load_accounts(names)
    assert set(found) == set(names)
    assert {n for n, doc in found.items() if doc} == set(names[:: BATCH_KEYS // 2])


def test_unreadable_item_is_left_for_a_single_read(aws: Any, store: DynamoDBStore) -> None:
    """An item of another schema is not answered: load_account then raises, naming it."""
    write(store, "svc_ok")
    doc = json.dumps({"schema": 999, "account": "svc_old"})
    aws.client("dynamodb").put_item(
        TableName=store.table,
        Item={"pk": {"S": "account#svc_old"}, "doc": {"S": doc}, "version": {"N": "1"}},
    )
    found = store.load_accounts(["svc_ok", "svc_old"])
    assert set(found) == {"svc_ok"}
    with pytest.raises(StateError, match="schema 999"):
        store.load_account("svc_old")


def test_missing_table_is_state_error(aws: Any) -> None:
    gone = DynamoDBStore("no-such-table", region=aws.region, endpoint_url=aws.endpoint_url)
    with pytest.raises(StateError, match="rotator state init"):
        gone.load_accounts(["svc_a", "svc_b"])
