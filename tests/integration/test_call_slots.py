"""`--concurrency N` is the number of MotherDuck requests in flight, seen from the server.

A fleet runs more rotations than that at once (rotator.ops.fleet_sizing
`rotations_in_flight`), so that one rotation's checkpoints and backend writes overlap
another one's request; `rotator.motherduck.slots.CallSlots` holds the requests themselves
to N. The simulator counts the API requests it is serving at once (`peak_in_flight`),
from routing to just before the answer, so a count above N would be a real breach.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.motherduck.client import MotherDuckClient, RetryPolicy
from rotator.motherduck.slots import CallSlots
from rotator.secret import Secret
from tests.support.rotator_cli import adopted_fleet, json_lines, read_secret
from tests.support.simulator_fixtures import SimulatorHandle, unique_username

LATENCY = 0.05


def list_from_threads(client: MotherDuckClient, username: str, threads: int) -> list[Any]:
    """`threads` listings at once; the answers (or the exceptions) in a list."""
    results: list[Any] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def one() -> None:
        start.wait()
        try:
            answer: Any = client.list_tokens(username)
        except Exception as exc:  # handed to the test, which fails on it
            answer = exc
        with lock:
            results.append(answer)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(worker.is_alive() for worker in workers)
    return results


@pytest.mark.parametrize("limit", [None, 1, 2])
def test_a_client_with_slots_never_has_more_requests_in_flight(
    simulator: SimulatorHandle, limit: int | None
) -> None:
    """Six threads list at once: the server sees six requests at a time without slots (so
    the gauge can tell), and never more than the limit with them; every call answers."""
    user = unique_username()
    simulator.seed(user)
    simulator.set_latency(0.2)
    simulator.clear_requests()
    with MotherDuckClient(simulator.url, Secret(simulator.admin_token)) as client:
        if limit is not None:
            client.limit_calls(CallSlots(limit))
        results = list_from_threads(client, user, 6)
    assert [type(r) for r in results] == [list] * 6, results
    assert simulator.peak_in_flight() == (6 if limit is None else limit)
    assert len(simulator.requests()) == 6


def test_a_call_waits_for_a_slot_only_as_long_as_its_budget(
    simulator: SimulatorHandle,
) -> None:
    """Every slot held elsewhere (hung calls): the call goes out once its own retry budget
    has passed, and says so, instead of waiting for ever or failing for others' slowness."""
    user = unique_username()
    simulator.seed(user)
    slots = CallSlots(1)
    policy = RetryPolicy(timeout=0.3)
    with MotherDuckClient(simulator.url, Secret(simulator.admin_token), retry=policy) as client:
        client.limit_calls(slots)
        with slots.slot(0), capture_logs() as logs:  # the one slot, held by "another call"
            tokens = client.list_tokens(user)
    assert len(tokens) == 1
    assert [e["event"] for e in logs] == ["motherduck.slot_wait_exceeded"]
    assert logs[0]["limit"] == 1


def test_slots_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CallSlots(0)


def overlap(requests: list[dict[str, Any]], users: list[str]) -> int:
    """The most accounts whose first and last requests bracket one instant."""
    spans = []
    for user in users:
        times = [datetime.fromisoformat(r["ts"]) for r in requests if f"/{user}/" in r["path"]]
        spans.append((min(times), max(times)))
    return max(sum(1 for a, b in spans if a <= start <= b) for start, _ in spans)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_fleet_keeps_its_requests_to_the_concurrency(
    simulator: Any, tmp_path: Path, processes: str
) -> None:
    """rotate --all --concurrency 2: at most two requests in flight at any instant, with one
    process or two workers (one slot each), and every account rotated in MotherDuck and
    in its file. With one process, three accounts are under way at once."""
    cli, users = adopted_fleet(simulator, tmp_path, 9)
    simulator.set_latency(LATENCY)
    simulator.clear_requests()
    done = cli.run(
        "rotate", "--all", "--force", "--json", "--concurrency", "2", "--processes", processes
    )
    assert done.returncode == 0, done.stderr
    assert [d["result"] for d in json_lines(done.stdout)] == ["completed"] * len(users)
    assert simulator.peak_in_flight() == 2
    for user in users:
        held = read_secret(cli.secret_file(user))["token_id"]
        assert simulator.live_token_ids(user) == {held}
    if processes == "1":
        assert overlap(simulator.requests(), users) == 3


def test_a_dry_run_of_a_fleet_keeps_its_reads_to_the_concurrency(
    simulator: Any, tmp_path: Path
) -> None:
    """A plan reads MotherDuck for every account, in one process: two reads at a time."""
    cli, users = adopted_fleet(simulator, tmp_path, 9)
    simulator.set_latency(LATENCY)
    simulator.clear_requests()
    done = cli.run("rotate", "--all", "--force", "--dry-run", "--json", "--concurrency", "2")
    assert done.returncode == 0, done.stderr
    assert len(json_lines(done.stdout)) == len(users)
    assert len(simulator.requests()) > len(users)  # the probe and a listing per account
    assert simulator.peak_in_flight() == 2
