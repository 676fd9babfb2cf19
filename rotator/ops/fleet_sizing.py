"""`rotate --processes N`: how many worker processes, and what each one gets.

- `can_fork()`: whether this platform forks workers at all (not macOS).
- `auto_processes(accounts, concurrency)`: the default for `--processes` — one per usable
  core (`usable_cpus()`: the affinity mask, bounded by a container's CPU quota), no more
  than the concurrency, at least `MIN_ACCOUNTS_PER_PROCESS` accounts each.
- `deal(names, processes)`: each worker's share of the accounts, round-robin.
- `split_concurrency(concurrency, processes)`: each worker's threads.
- `placement(processes)`: the CPU each worker is bound to, when each can have its own.

Pure functions of their arguments and of the host; the workers themselves are run by
rotator.ops.fleet_procs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = [
    "MIN_ACCOUNTS_PER_PROCESS",
    "auto_processes",
    "can_fork",
    "deal",
    "placement",
    "split_concurrency",
    "usable_cpus",
]

# A worker costs a fork, an engine and ~30 MB: worth it from this many accounts each.
MIN_ACCOUNTS_PER_PROCESS = 16


def can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform != "darwin"  # macOS: fork after imports is unsafe


def usable_cpus() -> int:
    """The CPUs this process may run on, and no more than a container's CPU quota allows
    (a Kubernetes pod limited to 1 CPU on a 64-core node gets 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(count, quota)) if quota else count


def _cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """cgroup v2 `cpu.max` (or v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`), rounded up."""
    try:
        with open(f"{root}/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(f"{root}/cpu/cpu.cfs_quota_us", encoding="ascii") as handle:
                quota = handle.read().strip()
            with open(f"{root}/cpu/cpu.cfs_period_us", encoding="ascii") as handle:
                period = handle.read().strip()
        except OSError:
            return None
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return -(-q // p) if q > 0 and p > 0 else None


def auto_processes(accounts: int, concurrency: int) -> int:
    """The default for `--processes`: one per usable core, but no more than the
    concurrency allows and at least `MIN_ACCOUNTS_PER_PROCESS` accounts each."""
    if not can_fork():
        return 1
    return max(1, min(usable_cpus(), concurrency, accounts // MIN_ACCOUNTS_PER_PROCESS))


def deal(names: Sequence[str], processes: int) -> list[list[str]]:
    """Round-robin in configuration order: disjoint shares, sizes within one of each other."""
    return [list(names[i::processes]) for i in range(processes)]


def split_concurrency(concurrency: int, processes: int) -> list[int]:
    """Threads per worker: `concurrency` in all (each worker at least one)."""
    base, extra = divmod(concurrency, processes)
    return [max(1, base + (1 if i < extra else 0)) for i in range(processes)]


def placement(processes: int) -> list[frozenset[int]] | None:
    """The one CPU each worker is bound to, or None to leave them to the scheduler.

    Bound only when there are exactly as many workers as CPUs in this process's affinity
    mask and no CPU quota below that: every CPU rotator may use then runs one worker, so
    binding takes nothing away from any of them. What it saves: a worker's 16 threads
    hand the GIL to each other at every system call, and when they are spread over
    cores each hand-off is a cross-CPU wake-up, while two workers migrate between cores.
    Bound, a 200-account fleet on 2 cores took 7-8 % less wall and 12 % less CPU
    (docs/performance.md, round 8). With fewer workers than CPUs, more, or a quota
    (a container limited to 2 CPUs of a 64-core node sees all 64), binding could pin a
    worker to a busy core or leave a core idle, so nothing is bound.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None
    if processes < 2 or len(cpus) != processes or usable_cpus() != processes:
        return None
    return [frozenset({cpu}) for cpu in cpus]
