"""Leases: who may write an account's records, until when, under which fencing number.

Every write to a state store is *fenced*: it names the lease it was made under, and the
store refuses it if that lease is no longer the account's current one. Fencing the store
alone is not enough — the effect after a checkpoint is the one that matters — so the
engine also checks (and renews) the lease immediately before every external side effect
(`RunContext._fence`), and carries the fencing number to each backend, which keeps the
highest one it was written under and refuses older ones. With that, a stalled run whose
lease was taken over can never promote, roll back or revoke: it stops with LeaseLost at
its next check, and what it may still have sent (a MotherDuck create) is undone by itself
or swept by its successor. docs/fencing.md lists every effect and how it is fenced.

    lease timeline     acquire(fence=n) ... save/fence ... save/fence ... [expiry] ...
    a takeover         acquire(fence=n+1): allowed once n expired (plus the store's
                       clock-skew margin), was released, or its holder's pid is dead on
                       this same host, same boot and same PID namespace
    the stale holder   save(fence=n) or fence(n) -> LeaseLost

This module holds what both stores (state/file.py, state/dynamodb.py) decide about a
lease; each store makes the check-and-write atomic in its own way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rotator.errors import LeaseHeld
from rotator.tables import format_time

__all__ = [
    "CALLS_PER_SETTLE",
    "RENEW_BELOW",
    "RENEW_FRACTION",
    "Lease",
    "lease_held",
    "lease_is_free",
    "lease_timing_problem",
    "next_lease",
    "pid_alive",
    "process_identity",
]


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may write an account's records, until when, under which fencing number."""

    account: str
    owner: str
    pid: int
    host: str
    fence: int
    acquired_at: datetime
    expires_at: datetime
    released: bool = False
    # Where `pid` means something: the kernel boot and the PID namespace it was read in.
    boot_id: str | None = None
    pid_ns: str | None = None
    version: int = 0  # bumped by every renewal: a takeover is conditional on the one it read

    def to_doc(self) -> dict[str, Any]:
        # Field by field: `asdict` deep-copies every value (35 us; leases are written at
        # acquire, renewal and release of every run).
        return {
            "account": self.account,
            "owner": self.owner,
            "pid": self.pid,
            "host": self.host,
            "fence": self.fence,
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "released": self.released,
            "boot_id": self.boot_id,
            "pid_ns": self.pid_ns,
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Lease:
        return cls(
            account=doc["account"],
            owner=doc["owner"],
            pid=int(doc["pid"]),
            host=doc["host"],
            fence=int(doc["fence"]),
            acquired_at=datetime.fromisoformat(doc["acquired_at"]),
            expires_at=datetime.fromisoformat(doc["expires_at"]),
            released=bool(doc.get("released", False)),
            boot_id=doc.get("boot_id") or None,
            pid_ns=doc.get("pid_ns") or None,
            version=int(doc.get("version") or 0),
        )

    def describe(self) -> str:
        return f"{self.owner} (pid {self.pid} on {self.host})"


def _read_link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


_identity: tuple[int, tuple[str | None, str | None]] | None = None


def process_identity() -> tuple[str | None, str | None]:
    """(boot id, PID namespace id) of this process; None where the platform cannot tell.

    Linux: /proc/sys/kernel/random/boot_id and the /proc/self/ns/pid link. A pid is only
    comparable between two processes that agree on both. Read once per process (neither
    changes while it lives; a forked child, whose pid differs, reads them again).
    """
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        found = _read_text("/proc/sys/kernel/random/boot_id"), _read_link("/proc/self/ns/pid")
        _identity = (pid, found)
    return _identity[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_is_free(
    existing: Lease | None,
    *,
    now: datetime,
    host: str,
    pid_alive: Callable[[int], bool] = pid_alive,
    identity: tuple[str | None, str | None] | None = None,
    skew: timedelta = timedelta(0),
) -> bool:
    """May a new holder take this lease? Released, expired, or provably dead.

    Expired means past `expires_at` by more than `skew` (the clock difference allowed
    between hosts). A live-looking lease is free early only when its pid is dead *and*
    the pid is known to be ours to judge: same host name, same boot id, same PID
    namespace (containers sharing a host name see other namespaces' pids as dead).
    """
    if existing is None or existing.released or existing.expires_at + skew <= now:
        return True
    boot, ns = identity if identity is not None else process_identity()
    same = (
        existing.host == host
        and boot is not None
        and ns is not None
        and (existing.boot_id, existing.pid_ns) == (boot, ns)
    )
    return same and not pid_alive(existing.pid)


def lease_held(account: str, holder: Lease) -> LeaseHeld:
    """The error a second run gets: who holds the account and until when."""
    return LeaseHeld(
        f"account {account!r} is being rotated by {holder.describe()} until "
        f"{format_time(holder.expires_at)}; try again later",
        account=account,
        holder=holder.describe(),
        expires_at=holder.expires_at,
    )


def next_lease(
    previous: Lease | None, *, account: str, owner: str, host: str, now: datetime, ttl: timedelta
) -> Lease:
    """A lease for us, fenced one above whatever lease came before.

    The first lease a store ever records for an account starts at the acquisition time in
    milliseconds, not at 1: backends keep the highest fencing number they were written
    under, and a run from a fresh (or lost and recreated) state store must not look older
    to them than the runs before it.
    """
    boot, ns = process_identity()
    return Lease(
        account=account,
        owner=owner,
        pid=os.getpid(),
        host=host,
        boot_id=boot,
        pid_ns=ns,
        fence=previous.fence + 1 if previous else int(now.timestamp() * 1000),
        acquired_at=now,
        expires_at=now + ttl,
    )


RENEW_FRACTION = 3  # during a long wait the lease is renewed every lease_ttl / 3
# A save renews a lease that has less than lease_ttl / RENEW_BELOW left (the file store;
# DynamoDB renews at every save), so after any fence at least that much is left.
RENEW_BELOW = 2
CALLS_PER_SETTLE = 3  # the create itself, a listing and a revoke, each up to `timeout`


def lease_timing_problem(
    lease_ttl: timedelta, create_settle: timedelta, timeout: timedelta
) -> str | None:
    """Why `lease_ttl` is too short to be safe, or None.

    A run renews its lease at every fenced effect and every lease_ttl / 3 while it waits;
    the longest stretch with no chance to renew is one create's settle window plus the
    calls around it. The lease must outlast that, or a healthy run could be taken over
    mid-wait and the successor would race it.
    """
    floor = create_settle + CALLS_PER_SETTLE * timeout
    if lease_ttl > floor:
        return None
    return (
        f"must be longer than [motherduck] create_settle + {CALLS_PER_SETTLE} x timeout "
        f"({int(create_settle.total_seconds())}s + {CALLS_PER_SETTLE} x "
        f"{int(timeout.total_seconds())}s = {int(floor.total_seconds())}s), so a run can wait "
        f"out a create and still renew its lease; got {int(lease_ttl.total_seconds())}s"
    )
