"""The simulator's records and time: users, tokens, JWT-shaped secrets, an adjustable clock.

Plain data with small views (`metadata()` is the API's list shape, `view()` the control
API's); the rules about who may do what live in `model.py`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from rotator.simulator.validation import DEFAULT_CONFIG

MAX_RECORDED: Final = 100_000

__all__ = [
    "Clock",
    "OffsetClock",
    "Recorder",
    "Token",
    "User",
    "make_secret",
    "parse_time",
    "rfc3339",
    "utc_now",
]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a `Z`, e.g. `2025-01-02T03:04:05.678Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class OffsetClock:
    """The wall clock plus an offset the control API moves (to expire tokens without sleeping)."""

    def __init__(self, base: Clock = utc_now) -> None:
        self._base = base
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def set_offset(self, seconds: float) -> None:
        with self._lock:
            self._offset = seconds

    def __call__(self) -> datetime:
        return self._base() + timedelta(seconds=self._offset)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_secret(username: str, token_id: str, token_type: str, iat: datetime) -> str:
    """A JWT-shaped secret; the random third part makes every secret different."""
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {
        "username": username,
        "token_id": token_id,
        "token_type": token_type,
        "iat": int(iat.timestamp()),
    }
    parts = (json.dumps(header, separators=(",", ":")), json.dumps(payload, separators=(",", ":")))
    return ".".join([*(_b64url(p.encode()) for p in parts), _b64url(secrets.token_bytes(32))])


@dataclass(slots=True)
class User:
    """An account: a human (maybe an org admin) or a service account."""

    username: str
    admin: bool
    service_account: bool
    created_at: datetime
    config: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_CONFIG))
    config_set: bool = False
    duckling_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def key(self) -> str:
        return self.username.lower()

    def view(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "admin": self.admin,
            "service_account": self.service_account,
            "created_ts": rfc3339(self.created_at),
            "config": copy.deepcopy(self.config),
            "config_set": self.config_set,
            "duckling_id": self.duckling_id,
        }


@dataclass(slots=True)
class Token:
    """One token ever issued; it stays here (for `/_sim/state`) after revoke or expiry."""

    id: str
    username: str
    name: str
    token_type: str
    secret: str
    created_at: datetime
    expire_at: datetime | None = None
    revoked_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expire_at is None or now < self.expire_at)

    def metadata(self) -> dict[str, Any]:
        """The list-tokens shape: never the secret; `expire_at` only with a ttl."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.expire_at is not None:
            out["expire_at"] = rfc3339(self.expire_at)
        out["created_ts"] = rfc3339(self.created_at)
        out["read_only"] = self.token_type == "read_scaling"
        out["token_type"] = self.token_type
        return out

    def view(self, now: datetime) -> dict[str, Any]:
        """The `/_sim/state` shape, secret included (a test tool; see docs/simulator.md)."""
        return {
            **self.metadata(),
            "expire_at": None if self.expire_at is None else rfc3339(self.expire_at),
            "username": self.username,
            "secret": self.secret,
            "revoked_at": None if self.revoked_at is None else rfc3339(self.revoked_at),
            "live": self.live(now),
        }


class Recorder:
    """The request log behind `/_sim/requests`: method, path, route, status, ts, fault.

    Also how many API requests are being served at once (`in_flight`) and the most since
    the log was last cleared (`peak_in_flight`): a client's concurrency limit, seen from
    the server. A request counts from its routing to its answer (latency included).
    """

    def __init__(self, limit: int = MAX_RECORDED) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._in_flight = 0
        self._peak = 0

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count one API request in flight for the block."""
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return {"in_flight": self._in_flight, "peak_in_flight": self._peak}

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._peak = self._in_flight
