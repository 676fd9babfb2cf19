"""What each validated table resolves to: plain frozen dataclasses, no pydantic.

The rest of the tool reads these (`config.motherduck.timeout`, `account.policy.checks`).
They are filled either by the hand-written check of the common config
(rotator/config/fast.py) or, for everything else and for every error message, from the
pydantic models of the same names in rotator/config/schema.py (`schema.to_plain`): one
result type whichever way a file was read. pydantic costs ~65 ms to import and ~20 ms to
build the models; a Lambda cold start or a `rotator` run on a valid config pays neither.

Field names, order and defaults are those of the pydantic models;
tests/unit/test_config_fastpath.py holds the two to that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from rotator.verify.hookspec import Hooks, HookSpec

__all__ = [
    "AuditSettings",
    "CheckSpec",
    "HookSpec",
    "Hooks",
    "MotherDuckSettings",
    "NotificationTarget",
    "Notifications",
    "Policy",
    "StateSettings",
]


@dataclass(frozen=True, slots=True)
class MotherDuckSettings:
    insecure: bool = False
    api_url: str = "https://api.motherduck.com"
    admin_token_env: str = "MOTHERDUCK_ADMIN_TOKEN"
    admin_token_secret_id: str | None = None
    timeout: timedelta = timedelta(seconds=10)
    create_settle: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class StateSettings:
    store: Literal["file", "dynamodb"] = "file"
    path: str = ".rotator-state"
    table: str | None = None
    region: str | None = None
    insecure: bool = False
    endpoint_url: str | None = None
    keep_runs: str | int | None = None
    clock_skew: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """Where the append-only audit trail goes: `<state path>/audit.jsonl` unless `path` is set.

    With the DynamoDB store and no `path`, events go to the log as `audit.recorded` lines
    (the run record keeps its own `events` list).
    """

    path: str | None = None
    fsync: bool = False


@dataclass(frozen=True, slots=True)
class NotificationTarget:
    """One webhook to call when a run ends; `slack` sends an incoming-webhook payload."""

    type: Literal["webhook", "slack"]
    url: str
    timeout: timedelta = timedelta(seconds=5)
    retries: int = 3
    backoff: timedelta = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Notifications:
    on_success: tuple[NotificationTarget, ...] = ()
    on_failure: tuple[NotificationTarget, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One connectivity check; type-specific options live in `options`."""

    type: str
    attempts: int = 1
    interval: timedelta = timedelta(seconds=2)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Policy:
    """Rotation policy: `[defaults]`, overridable per account."""

    token_type: Literal["read_write", "read_scaling"] = "read_write"
    ttl: timedelta | None = None
    rotate_after: timedelta = timedelta(days=30)
    rotate_before_expiry: timedelta = timedelta(days=7)
    revoke_grace: timedelta = timedelta(0)
    confirm_revoked: bool = False
    lease_ttl: timedelta = timedelta(minutes=15)
    checks: tuple[CheckSpec, ...] = (CheckSpec(type="readback"),)
    hooks: Hooks = field(default_factory=Hooks)
    window: str | None = None
    spread: timedelta = timedelta(0)


# The names of Policy's fields, in order: the keys `[defaults]` and an account may set.
POLICY_FIELDS: tuple[str, ...] = tuple(Policy.__dataclass_fields__)
