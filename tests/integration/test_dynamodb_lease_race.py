"""Two DynamoDB store clients racing a takeover against the holder's renewal, on moto.

The takeover is conditional on exactly the lease record it read (fence, version and
expiry) and every renewal bumps the version, so at most one of the two can succeed, in
either order. The interleavings are forced (the renewal is injected between the taker's
read and its conditional put) rather than left to two threads: moto's server does not
serialize concurrent conditional writes to one item the way DynamoDB does, so a threaded
race against it can show two winners that real DynamoDB would never allow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator.errors import LeaseHeld, LeaseLost
from rotator.state.dynamodb import DynamoDBStore, create_table
from rotator.state.lease import Lease
from tests.support.simulator_fixtures import unique_username

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def table(aws: Any) -> str:
    name = f"rotator-race-{unique_username()}"
    create_table(name, region=aws.region, endpoint_url=aws.endpoint_url)
    return name


def client(aws: Any, table: str, clock: Clock, host: str, skew: float = 0) -> DynamoDBStore:
    return DynamoDBStore(
        table, region=aws.region, endpoint_url=aws.endpoint_url, clock=clock, host=host,
        pid_alive=lambda pid: True, clock_skew=timedelta(seconds=skew),
    )  # fmt: skip


def test_renewal_between_read_and_takeover_wins(aws: Any, table: str) -> None:
    """The holder renews after the taker read the (expired) record: the takeover is refused."""
    holder_clock, taker_clock = Clock(), Clock(T0 + TTL + timedelta(seconds=1))
    holder = client(aws, table, holder_clock, "host-a")
    taker = client(aws, table, taker_clock, "host-b")
    lease = holder.acquire_lease("svc", owner="holder", ttl=TTL)
    holder_clock.now = T0 + TTL - timedelta(seconds=1)  # the holder still believes in it
    renewed: list[Lease] = []
    read = taker.read_lease

    def read_then_let_the_holder_renew(account: str) -> Lease | None:
        seen = read(account)
        if not renewed:  # only between the taker's first read and its conditional put
            renewed.append(holder.save(lease, run={"run_id": "r1", "version": 1}))
        return seen

    taker.read_lease = read_then_let_the_holder_renew  # type: ignore[method-assign]
    with pytest.raises(LeaseHeld):
        taker.acquire_lease("svc", owner="taker", ttl=TTL)
    current = holder.read_lease("svc")
    assert current is not None and current.owner == "holder" and current.fence == lease.fence
    assert current.version == renewed[0].version == lease.version + 1
    holder.save(renewed[0], run={"run_id": "r1", "version": 2})  # still the holder


def test_takeover_first_then_renewal_is_lost(aws: Any, table: str) -> None:
    """The takeover lands first: the stale holder's renewal fails with LeaseLost."""
    holder = client(aws, table, Clock(), "host-a")
    lease = holder.acquire_lease("svc", owner="holder", ttl=TTL)
    taker = client(aws, table, Clock(T0 + TTL + timedelta(seconds=1)), "host-b")
    taken = taker.acquire_lease("svc", owner="taker", ttl=TTL)
    assert taken.fence == lease.fence + 1
    with pytest.raises(LeaseLost):
        holder.save(lease, run={"run_id": "r1", "version": 1})
    assert holder.load_run("r1") is None


def test_skew_margin_delays_takeover(aws: Any, table: str) -> None:
    """Expired by less than the clock-skew margin: still held; by more: taken over."""
    client(aws, table, Clock(), "host-a").acquire_lease("svc", owner="h", ttl=TTL)
    just_after = Clock(T0 + TTL + timedelta(seconds=2))
    with pytest.raises(LeaseHeld):
        client(aws, table, just_after, "host-b", skew=5).acquire_lease("svc", owner="t", ttl=TTL)
    just_after.now += timedelta(seconds=5)
    client(aws, table, just_after, "host-b", skew=5).acquire_lease("svc", owner="t", ttl=TTL)
