"""What every checkpoint store shares: where a run's progress survives a crash.

A store holds three kinds of JSON documents — one per run, one per account (the current
token, the active run, an index of past runs), one lease per account
(rotator/state/lease.py) — and a per-store HMAC key for token fingerprints. It never sees
a token secret.

`FileStore` (rotator/state/file.py) is the default (one host; `flock` makes each
check-and-write atomic); the DynamoDB store (rotator/state/dynamodb.py) does the same with
conditional writes. Both satisfy `StateStore`, the protocol the engine uses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rotator.errors import StateError
from rotator.state.lease import Lease

__all__ = [
    "SCHEMA_VERSION",
    "Clock",
    "Doc",
    "StateStore",
    "parse_fingerprint_key",
    "utcnow",
]

SCHEMA_VERSION = 1
Doc = dict[str, Any]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_fingerprint_key(text: str, where: str) -> bytes:
    """The stored HMAC key (hex, at least 16 bytes); StateError naming `where` otherwise."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise StateError(
            f"{where}: the fingerprint key is empty or not hex; restore it from a backup "
            "(a new key would orphan the recorded fingerprints)"
        )
    return key


class StateStore(Protocol):
    """What the workflow needs from a checkpoint store."""

    def fingerprint_key(self) -> bytes: ...

    def acquire_lease(self, account: str, *, owner: str, ttl: timedelta) -> Lease: ...

    def release_lease(self, lease: Lease) -> None: ...

    def read_lease(self, account: str) -> Lease | None: ...

    def load_account(self, account: str) -> Doc | None: ...

    def load_run(self, run_id: str) -> Doc | None: ...

    def save(
        self, lease: Lease, *, run: Doc | None = None, account: Doc | None = None
    ) -> Lease: ...

    def describe(self) -> str: ...
