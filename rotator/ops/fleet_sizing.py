"""`rotate --processes N`: how many worker processes, and what each one gets.

- `can_fork()`: whether this platform forks workers at all (not macOS).
- `auto_processes(accounts, concurrency)`: the default for `--processes` — one per usable
  core (`usable_cpus()`: the affinity mask, bounded by a container's CPU quota), no more
  than the concurrency, at least `MIN_ACCOUNTS_PER_PROCESS` accounts each.
- `deal(names, processes)`: each worker's share of the accounts, round-robin.
- `split_concurrency(concurrency, processes)`: each worker's share of the requests in flight.
- `rotations_in_flight(calls)`: how many rotations (threads) keep `calls` requests busy.
- `placement(processes)`: the CPU each of a fleet's processes is bound to (or None);
  `bind(cpus)` binds the calling thread and the threads it starts, `bound(cpus)` for a
  block.

Functions of their arguments and of the host (`bind` and `bound` change the calling
thread's CPU mask); the workers themselves are run by rotator.ops.fleet_procs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

from rotator.envsettings import bind_cpus

__all__ = [
    "MIN_ACCOUNTS_PER_PROCESS",
    "auto_processes",
    "bind",
    "bound",
    "can_fork",
    "deal",
    "placement",
    "rotations_in_flight",
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
    """Requests in flight per worker: `concurrency` in all (each worker at least one)."""
    base, extra = divmod(concurrency, processes)
    return [max(1, base + (1 if i < extra else 0)) for i in range(processes)]


def rotations_in_flight(calls: int) -> int:
    """Rotations at once (threads) for at most `calls` MotherDuck requests in flight.

    A rotation is not always waiting on MotherDuck: part of it is checkpoints, backend
    writes and checks. With one rotation per request slot, each slot idles for those
    parts, and a fleet of 200 at `--concurrency 32` took 7 rounds of a whole rotation.
    Half as many rotations again keep the slots busy (rotator.motherduck.slots holds the
    requests to `calls`): 2.38 -> 2.15 s for that fleet, where twice as many gained
    little more for more CPU (docs/performance.md). With one request slot, one rotation
    at a time, as a user who asks for `--concurrency 1` expects.
    """
    return calls + calls // 2


def placement(processes: int) -> list[frozenset[int]] | None:
    """The one CPU each of a fleet's `processes` Python processes is bound to, or None to
    leave them to the scheduler.

    A process runs Python on one core at a time (the GIL), and its threads hand the lock
    to each other at every system call. Spread over cores, each hand-off is a cross-CPU
    wake-up, and the processes migrate. Bound, the same work took much less wall and CPU
    on this project's 2-core machine (docs/performance.md, round 8):
    - two workers: 2.62 -> 2.42 s for 200 accounts, 11.0 -> 9.9 s for 1,000;
    - one process with 32 threads: 3.9 -> 2.6 s, half the CPU;
    - at 4-8 threads the wall is the same and the CPU 15-20 % lower.

    The processes get distinct CPUs of this process's affinity mask. The first is the CPU
    it runs on now (where the scheduler just put it) and the others follow in mask order.
    Nothing is bound when:
    - the mask has one CPU (nothing to choose);
    - there are more processes than CPUs (two would share one pinned core, which was
      slower);
    - a CPU quota is below the mask (a container limited to 2 CPUs of a shared 64-core
      node sees all 64: the node's other tenants keep some of them busy, and only the
      scheduler knows which. A pod given a CPU set of its own has a mask of its size and
      is bound);
    - this is not Linux;
    - `ROTATOR_BIND_CPUS=0` (or false, no, off) is set (a shared host where staying on
      one core is the worse deal); a value it does not understand is a ConfigError
      (rotator.envsettings).
    """
    if not bind_cpus():
        return None
    try:
        mask = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None
    if len(mask) < 2 or not 1 <= processes <= len(mask) or usable_cpus() < len(mask):
        return None  # usable_cpus() below the mask: a CPU quota smaller than it
    here = _current_cpu()
    first = mask.index(here) if here in mask else 0
    return [frozenset({mask[(first + i) % len(mask)]}) for i in range(processes)]


def _current_cpu() -> int | None:
    """The CPU the calling thread runs on now (`processor`, field 39 of its stat file)."""
    try:
        with open("/proc/thread-self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[36])  # fields after the command name start at field 3
    except (OSError, ValueError, IndexError):
        return None


def bind(cpus: frozenset[int]) -> set[int] | None:
    """Bind the calling thread, and the threads it starts from now on, to `cpus`.

    Returns the mask it had, or None when the kernel refused: a CPU gone offline, or a
    cpuset changed under us. The scheduler then decides, as without binding.
    """
    try:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpus)
    except OSError:
        return None
    return before


@contextlib.contextmanager
def bound(cpus: frozenset[int] | None) -> Iterator[None]:
    """`bind(cpus)` for the block (nothing when None), the calling thread's mask restored
    after it."""
    before = bind(cpus) if cpus is not None else None
    try:
        yield
    finally:
        if before is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, before)
