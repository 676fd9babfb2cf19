"""The fleet loop's progress counts, its log events and the shard selection."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from rotator.engine.outcome import Outcome
from rotator.ops.fleet import FleetProgress, run_fleet, select_shard
from rotator.schedule import shard_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestFleetProgress:
    def test_counts_and_slowest(self) -> None:
        """done/failed/incomplete are counted; the slowest is the longest, running or not."""
        clock = FakeClock()
        progress = FleetProgress(total=4, clock=clock)
        progress.started("svc_a")
        progress.started("svc_b")
        clock.now += 2
        progress.finished("svc_a", "completed")
        progress.started("svc_c")
        clock.now += 1
        progress.finished("svc_c", "rolled_back")
        snap = progress.snapshot()
        assert (snap["done"], snap["failed"], snap["running"]) == (2, 1, 1)
        assert (snap["slowest_account"], snap["slowest_seconds"]) == ("svc_b", 3.0)
        clock.now += 5
        progress.finished("svc_b", "incomplete")
        assert progress.line() == "rotator: 3/4 done, 1 failed, 1 incomplete, slowest svc_b (8.0s)"


class TestRunFleet:
    def test_results_in_order_and_a_final_progress_event(self) -> None:
        """Off a terminal, the pass ends with a fleet.progress event; outcomes keep name order."""
        names = ["svc_a", "svc_b", "svc_c"]

        def one(name: str) -> Outcome:
            return Outcome(name, "error" if name == "svc_b" else "not_due", "")

        with capture_logs() as logs:
            outcomes = run_fleet(names, one, concurrency=2, stream=io.StringIO())
        assert [o.account for o in outcomes] == names
        final = [e for e in logs if e["event"] == "fleet.progress"][-1]
        assert (final["done"], final["total"], final["failed"]) == (3, 3, 1)

    def test_one_account_has_no_progress(self) -> None:
        """A single account is run directly, with no progress output."""
        with capture_logs() as logs:
            run_fleet(["svc_a"], lambda n: Outcome(n, "not_due", ""), concurrency=4)
        assert not [e for e in logs if e["event"] == "fleet.progress"]


class TestSelectShard:
    def test_shards_partition_the_names(self) -> None:
        """The shards of N are disjoint, cover every name and keep configuration order."""
        names = [f"svc_{i:03d}" for i in range(50)]
        parts = [select_shard(names, (i, 3)) for i in range(3)]
        assert sorted(n for part in parts for n in part) == names
        assert all(shard_of(n, 3) == i for i, part in enumerate(parts) for n in part)
        assert parts[0] == [n for n in names if n in parts[0]]
        assert select_shard(names, None) == names
