"""`rotate --processes`: how the accounts are dealt to workers and how many workers run."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

import pytest

from rotator import cli
from rotator.errors import ConfigError
from rotator.ops import fleet_procs, fleet_sizing
from rotator.ops.fleet_procs import (
    MIN_ACCOUNTS_PER_PROCESS,
    auto_processes,
    deal,
    split_concurrency,
)


@pytest.mark.parametrize(("count", "processes"), [(7, 3), (200, 2), (1000, 7), (2, 2)])
def test_shares_are_disjoint_cover_everything_and_balanced(count: int, processes: int) -> None:
    names = [f"svc_{i}" for i in range(count)]
    shares = deal(names, processes)
    flat = [n for share in shares for n in share]
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    for share in shares:  # configuration order kept within a share
        assert share == sorted(share, key=names.index)


def test_auto_is_one_per_core_with_enough_accounts_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_sizing, "usable_cpus", lambda: 4)
    monkeypatch.setattr(fleet_sizing, "can_fork", lambda: True)
    assert auto_processes(1000, 32) == 4
    assert auto_processes(1000, 2) == 2  # never more processes than the concurrency
    assert auto_processes(2 * MIN_ACCOUNTS_PER_PROCESS, 32) == 2
    assert auto_processes(MIN_ACCOUNTS_PER_PROCESS - 1, 32) == 1
    monkeypatch.setattr(fleet_sizing, "can_fork", lambda: False)
    assert auto_processes(1000, 32) == 1


@pytest.mark.parametrize(
    ("mask", "here", "processes", "bound"),
    [
        ({4, 7}, 4, 2, [{4}, {7}]),  # one worker per CPU of the mask: each its own
        ({4, 7}, 7, 2, [{7}, {4}]),  # the first where the parent runs now
        ({0, 1, 2, 3}, 2, 2, [{2}, {3}]),  # fewer workers than CPUs: still one each
        ({0, 1, 2, 3}, 3, 1, [{3}]),  # one process (its threads): the CPU it is on
        ({5, 9}, None, 1, [{5}]),  # where it runs unknown: the mask's first
        ({0, 1}, 0, 3, None),  # more workers than CPUs: two would share a pinned core
        ({0}, 0, 1, None),  # one CPU: nothing to choose
    ],
)
def test_each_process_of_a_fleet_gets_a_cpu_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
    mask: set[int],
    here: int | None,
    processes: int,
    bound: list[set[int]] | None,
) -> None:
    monkeypatch.delenv("ROTATOR_BIND_CPUS", raising=False)
    monkeypatch.setattr(fleet_sizing.os, "sched_getaffinity", lambda pid: set(mask))
    monkeypatch.setattr(fleet_sizing, "_current_cpu", lambda: here)
    monkeypatch.setattr(fleet_sizing, "_cgroup_cpu_quota", lambda: None)
    got = fleet_sizing.placement(processes)
    assert (None if got is None else [set(cpus) for cpus in got]) == bound


@pytest.mark.parametrize(("quota", "binds"), [(None, True), (4, True), (8, True), (2, False)])
def test_a_cpu_quota_below_the_mask_leaves_placement_to_the_scheduler(
    monkeypatch: pytest.MonkeyPatch, quota: int | None, binds: bool
) -> None:
    """A container limited to 2 CPUs of a shared node whose 4 it may run on: not bound."""
    monkeypatch.delenv("ROTATOR_BIND_CPUS", raising=False)
    monkeypatch.setattr(fleet_sizing.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(fleet_sizing, "_current_cpu", lambda: 0)
    monkeypatch.setattr(fleet_sizing, "_cgroup_cpu_quota", lambda: quota)
    assert (fleet_sizing.placement(1) is not None) is binds


@pytest.mark.parametrize(
    ("value", "binds"),
    [("0", False), ("off", False), ("False", False), ("no", False), ("1", True), ("on", True),
     ("", True)],
)
def test_binding_is_off_with_rotator_bind_cpus_0(
    monkeypatch: pytest.MonkeyPatch, value: str, binds: bool
) -> None:
    monkeypatch.setattr(fleet_sizing.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(fleet_sizing, "_cgroup_cpu_quota", lambda: None)
    monkeypatch.setenv("ROTATOR_BIND_CPUS", value)
    assert (fleet_sizing.placement(2) is not None) is binds


def test_a_rotator_bind_cpus_it_does_not_understand_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROTATOR_BIND_CPUS", "maybe")
    with pytest.raises(ConfigError, match="ROTATOR_BIND_CPUS: 'maybe'"):
        fleet_sizing.placement(2)


def test_current_cpu_is_one_this_process_may_run_on() -> None:
    assert fleet_sizing._current_cpu() in os.sched_getaffinity(0)


def test_process_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_sizing, "usable_cpus", lambda: 2)
    monkeypatch.setattr(fleet_sizing, "can_fork", lambda: True)
    monkeypatch.setattr(fleet_procs, "can_fork", lambda: True)  # what cli imports

    def count(*argv: str, accounts: int = 100) -> int:
        args = cli.build_parser().parse_args(["rotate", "--all", *argv])
        assert isinstance(args, argparse.Namespace)
        return cli.rotate._process_count(args, accounts)

    assert count() == 2  # auto
    assert count("--processes", "auto") == 2
    assert count("--processes", "1") == 1
    assert count("--processes", "8") == 4  # at most --concurrency (default 4)
    assert count("--processes", "8", "--concurrency", "32") == 8
    assert count("--processes", "8", accounts=3) == 3  # never an idle worker
    assert count("--processes", "8", accounts=1) == 1  # one account: errors raise as today
    assert count("--processes", "8", "--dry-run") == 1  # a plan reads only: one process


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_bad_values_are_usage_errors(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["rotate", "--all", "--processes", value])
    assert exc.value.code == 2
    assert "--processes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("concurrency", "processes", "calls"),
    [(32, 2, [16, 16]), (5, 2, [3, 2]), (4, 4, [1, 1, 1, 1]), (7, 3, [3, 2, 2])],
)
def test_request_slots_add_up_to_the_concurrency(
    concurrency: int, processes: int, calls: list[int]
) -> None:
    assert split_concurrency(concurrency, processes) == calls


@pytest.mark.parametrize(("calls", "rotations"), [(1, 1), (2, 3), (4, 6), (16, 24), (32, 48)])
def test_half_as_many_rotations_again_as_request_slots(calls: int, rotations: int) -> None:
    """One slot: one account at a time; otherwise checkpoints overlap others' requests."""
    assert fleet_sizing.rotations_in_flight(calls) == rotations


def test_a_worker_that_cannot_be_forked_has_its_accounts_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fork() failing (EAGAIN: out of processes): every account still printed, as an error
    saying it was not started; nothing hangs and nothing runs."""
    import errno

    def no_fork() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    def setup(gate: object, slots: object) -> fleet_procs.One:
        raise AssertionError("no worker runs")

    monkeypatch.setattr(fleet_procs.os, "fork", no_fork)
    names = ["a", "b", "c"]
    pairs = fleet_procs.run_fleet_processes(
        names, setup, processes=2, concurrency=4, log_format="json"
    )
    assert [o.account for o, _ in pairs] == names
    assert {(o.result, code) for o, code in pairs} == {("error", 1)}
    assert all("not started" in o.message and "could not be started" in o.message for o, _ in pairs)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: two workers may share them
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),
        ({}, None),
    ],
)
def test_a_container_cpu_quota_bounds_auto(
    tmp_path: Path, files: dict[str, str], quota: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert fleet_sizing._cgroup_cpu_quota(str(tmp_path)) == quota


def test_bound_binds_the_block_and_its_threads_then_restores_the_mask() -> None:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    seen: list[set[int]] = []
    with fleet_sizing.bound(frozenset({cpu})):
        inside = os.sched_getaffinity(0)
        thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        thread.start()
        thread.join()
    assert inside == {cpu}
    assert seen == [{cpu}]  # a thread started in the block inherits the binding
    assert os.sched_getaffinity(0) == before


def test_bound_leaves_the_mask_alone_when_the_kernel_refuses() -> None:
    before = os.sched_getaffinity(0)
    with fleet_sizing.bound(frozenset({max(before) + 4096})):  # no such CPU: EINVAL
        assert os.sched_getaffinity(0) == before
    with fleet_sizing.bound(None):
        assert os.sched_getaffinity(0) == before
    assert os.sched_getaffinity(0) == before
