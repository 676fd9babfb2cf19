"""The DynamoDB checkpoint store against moto's server: leases, fencing, versions, and
real `rotator` processes racing on one account."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.errors import LeaseHeld, LeaseLost, StateError
from rotator.state.dynamodb import DynamoDBStore, create_table
from tests.support.rotator_cli import CliSetup, json_lines, seed_file
from tests.support.simulator_fixtures import unique_username

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def table(aws: Any) -> str:
    name = f"rotator-{unique_username()}"
    assert create_table(name, region=aws.region, endpoint_url=aws.endpoint_url).startswith(
        "created"
    )
    return name


def store(
    aws: Any, table: str, clock: Clock, host: str = "host-a", alive: bool = True
) -> DynamoDBStore:
    return DynamoDBStore(
        table,
        region=aws.region,
        endpoint_url=aws.endpoint_url,
        clock=clock,
        host=host,
        pid_alive=lambda pid: alive,
    )


class TestDynamoDBStore:
    def test_table_init_is_idempotent(self, aws: Any, table: str) -> None:
        """`state init` on an existing table says so and changes nothing."""
        assert "already exists" in create_table(
            table, region=aws.region, endpoint_url=aws.endpoint_url
        )
        ttl = aws.client("dynamodb").describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "ttl"

    def test_lease_held_then_taken_over_and_fenced(self, aws: Any, table: str) -> None:
        """A live lease refuses others; after expiry the taker's fence stops the stale holder."""
        clock = Clock()
        first = store(aws, table, clock).acquire_lease(
            "svc_a", owner="one", ttl=timedelta(minutes=5)
        )
        with pytest.raises(LeaseHeld, match="one \\(pid"):
            store(aws, table, clock, host="host-b").acquire_lease(
                "svc_a", owner="two", ttl=timedelta(minutes=5)
            )
        clock.now += timedelta(minutes=6)
        second = store(aws, table, clock, host="host-b").acquire_lease(
            "svc_a", owner="two", ttl=timedelta(minutes=5)
        )
        assert second.fence == first.fence + 1
        with pytest.raises(LeaseLost):
            store(aws, table, clock).save(first, run={"run_id": "r1", "version": 1})
        assert store(aws, table, clock).load_run("r1") is None
        store(aws, table, clock, host="host-b").save(second, run={"run_id": "r1", "version": 1})
        assert store(aws, table, clock).load_run("r1") == {
            "schema": 1,
            "run_id": "r1",
            "version": 1,
        }

    def test_versions_guard_lost_updates(self, aws: Any, table: str) -> None:
        """A document written with a stale version is refused, not silently overwritten."""
        clock = Clock()
        s = store(aws, table, clock)
        lease = s.acquire_lease("svc_a", owner="one", ttl=timedelta(minutes=5))
        s.save(lease, account={"account": "svc_a", "version": 1})
        s.save(lease, account={"account": "svc_a", "version": 2})
        with pytest.raises(StateError, match="another writer"):
            s.save(lease, account={"account": "svc_a", "version": 2})
        assert s.load_account("svc_a") == {"schema": 1, "account": "svc_a", "version": 2}

    def test_finished_runs_get_a_ttl(self, aws: Any, table: str) -> None:
        """Completed runs carry the TTL attribute so DynamoDB expires them."""
        clock = Clock()
        s = store(aws, table, clock)
        lease = s.acquire_lease("svc_a", owner="one", ttl=timedelta(minutes=5))
        s.save(lease, run={"run_id": "r2", "state": "completed", "version": 1})
        item = aws.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "run#r2"}})["Item"]
        assert int(item["ttl"]["N"]) > T0.timestamp()

    def test_fingerprint_key_shared(self, aws: Any, table: str) -> None:
        """Every store on the table derives fingerprints from the same key."""
        assert (
            store(aws, table, Clock()).fingerprint_key()
            == store(aws, table, Clock(), host="b").fingerprint_key()
        )

    def test_missing_table(self, aws: Any) -> None:
        """A table that does not exist gives a StateError saying how to create it."""
        with pytest.raises(StateError, match="rotator state init"):
            store(aws, "no-such-table", Clock()).load_account("svc_a")


def test_cli_processes_race_on_dynamodb(aws: Any, simulator: Any, tmp_path: Path) -> None:
    """Eight `rotator rotate` processes on one account via DynamoDB: one rotates, seven exit 3."""
    user = unique_username()
    old_secret, old_id = simulator.seed(user)
    table = f"rotator-{user}"
    cli = CliSetup(
        tmp_path, simulator.url, simulator.admin_token, [user], extra_env=aws.env
    ).write()
    cli.config_path.write_text(
        cli.config_path.read_text().replace(
            '[state]\npath = "state"',
            f'[state]\nstore = "dynamodb"\ntable = "{table}"\nregion = "{aws.region}"\nendpoint_url = "{aws.endpoint_url}"',
        )
    )
    seed_file(cli.secret_file(user), old_secret, old_id)
    assert cli.run("state", "init").returncode == 0
    assert cli.run("adopt", user, "--token-id", old_id).returncode == 0
    simulator.set_latency(1.0)
    simulator.clear_requests()
    procs = [cli.start("rotate", user, "--force", "--json") for _ in range(8)]
    results = [(p.communicate(timeout=180), p.returncode) for p in procs]
    simulator.set_latency(0)
    assert sorted(code for _, code in results) == [0] + [3] * 7, [e for (_, e), _ in results]
    assert [r["route"] for r in simulator.requests()].count("create_token") == 1
    [winner] = [json_lines(out)[0] for (out, _), code in results if code == 0]
    assert simulator.live_token_ids(user) == {winner["new_token_id"]}
    assert json.loads(cli.secret_file(user).read_text())["token_id"] == winner["new_token_id"]
