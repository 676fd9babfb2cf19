"""The TOML tables as pydantic models: what each key may hold, checked one table at a time.

`[motherduck]` MotherDuckSettings, `[state]` StateSettings, `[audit]` AuditSettings,
`[notifications]` Notifications, `[defaults]` and the per-account overrides Policy (with
its `checks` entries, CheckSpec); RawConfig is the whole document and RawAccount one
`[[accounts]]` table before its overrides are merged. Unknown keys are refused. Rules
across tables (lease timing, checks that build, ttl against rotate_before_expiry) are
the loader's, in rotator/config/load.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from rotator.durations import parse_duration
from rotator.netpolicy import check_aws_region, insecure_reason
from rotator.verify.hooks import Hooks

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,254}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotherDuckSettings(Strict):
    # Plain http to a host other than loopback sends the admin token in clear: refused
    # unless this says so (and then warned about on every run). Before api_url, which
    # is validated against it.
    insecure: bool = False
    api_url: str = "https://api.motherduck.com"
    admin_token_env: str = "MOTHERDUCK_ADMIN_TOKEN"
    # Lambda: read the admin token from this Secrets Manager secret instead of the env var.
    admin_token_secret_id: str | None = None
    timeout: Duration = timedelta(seconds=10)
    # How long after sending a create the server may still commit it (a load balancer's
    # idle timeout is typically 60 s). A create that got no answer is followed by listings
    # by name until then, before another is minted: a late commit would be orphaned.
    create_settle: Duration = timedelta(seconds=60)

    @field_validator("create_settle")
    @classmethod
    def _settle_range(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(minutes=10):
            raise ValueError("must be between 0s and 10m")
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL such as https://api.motherduck.com")
        why = insecure_reason(value)
        if why and not info.data.get("insecure"):
            raise ValueError(
                f"{why} would send the admin token in clear; use https, or set insecure = true"
            )
        return value.rstrip("/")

    @field_validator("admin_token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_NAME_RE.fullmatch(value):
            raise ValueError("must be an environment variable name")
        return value


class StateSettings(Strict):
    store: Literal["file", "dynamodb"] = "file"
    path: str = ".rotator-state"
    table: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    # Retention (rotator/config/keep.py; pruning in rotator/ops/retention.py): finished runs
    # older than a duration ("90d") or beyond a count per account (90) are removed by
    # `rotator state prune` and after a pass.
    keep_runs: str | int | None = None

    @field_validator("keep_runs")
    @classmethod
    def _keep_runs(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            from rotator.config.keep import parse_keep

            parse_keep(value)
        return value

    _region = field_validator("region")(check_aws_region)

    # DynamoDB: how far hosts' clocks may disagree; a lease is taken over only once it
    # expired by more than this on the taker's clock.
    clock_skew: Duration = timedelta(seconds=5)


class AuditSettings(Strict):
    """Where the append-only audit trail goes: `<state path>/audit.jsonl` unless `path` is set.

    With the DynamoDB store and no `path`, events go to the log as `audit.recorded` lines
    (the run record keeps its own `events` list).
    """

    path: str | None = None
    fsync: bool = False


class NotificationTarget(Strict):
    """One webhook to call when a run ends; `slack` sends an incoming-webhook payload."""

    type: Literal["webhook", "slack"]
    url: str
    timeout: Duration = timedelta(seconds=5)
    retries: int = Field(default=3, ge=0, le=10)
    backoff: Duration = timedelta(seconds=1)  # doubled per retry, capped at 30s

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_range(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(minutes=1):
            raise ValueError("must be between 1s and 60s")
        return value


class Notifications(Strict):
    on_success: tuple[NotificationTarget, ...] = ()
    on_failure: tuple[NotificationTarget, ...] = ()


class CheckSpec(Strict):
    """One connectivity check; type-specific options live in `options`."""

    type: str
    attempts: int = Field(default=1, ge=1, le=100)
    interval: Duration = timedelta(seconds=2)
    options: Mapping[str, Any] = Field(default_factory=dict)


def _check_spec(value: object) -> object:
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, Mapping):
        known = {"type", "attempts", "interval"}
        base = {k: v for k, v in value.items() if k in known}
        base["options"] = {k: v for k, v in value.items() if k not in known}
        return base
    return value


CheckEntry = Annotated[CheckSpec, BeforeValidator(_check_spec)]


class Policy(Strict):
    """Rotation policy: `[defaults]`, overridable per account."""

    token_type: Literal["read_write", "read_scaling"] = "read_write"
    ttl: Duration | None = None
    rotate_after: Duration = timedelta(days=30)
    rotate_before_expiry: Duration = timedelta(days=7)
    revoke_grace: Duration = timedelta(0)
    confirm_revoked: bool = False
    lease_ttl: Duration = timedelta(minutes=15)
    checks: tuple[CheckEntry, ...] = (CheckSpec(type="readback"),)
    hooks: Hooks = Hooks()
    # Schedules (rotator/schedule.py): start new rotations only inside this weekly UTC
    # window ("Mon-Fri 02:00-05:00"), and move each account's due date later by a stable
    # per-account offset in [0, spread).
    window: str | None = None
    spread: Duration = timedelta(0)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            from rotator.schedule import parse_window

            parse_window(value)
        return value

    @field_validator("spread")
    @classmethod
    def _spread_range(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=365):
            raise ValueError("must be at most 365d")
        return value

    @field_validator("ttl")
    @classmethod
    def _ttl_range(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not 300 <= value.total_seconds() <= 31_536_000:
            raise ValueError("must be between 300s and 365d (MotherDuck's ttl range)")
        return value

    @field_validator("lease_ttl")
    @classmethod
    def _lease_floor(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=30):
            raise ValueError("must be at least 30s")
        return value


class RawAccount(BaseModel):
    """First pass over `[[accounts]]`: policy overrides ride along as extras."""

    model_config = ConfigDict(extra="allow")

    username: str
    backends: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not USERNAME_RE.fullmatch(value):
            raise ValueError(
                "must be 3-255 characters, start with a letter, letters/digits/underscore only"
            )
        return value


class RawConfig(Strict):
    motherduck: MotherDuckSettings = MotherDuckSettings()
    state: StateSettings = StateSettings()
    defaults: dict[str, Any] = Field(default_factory=dict)
    accounts: list[dict[str, Any]] = Field(default_factory=list)
    audit: AuditSettings = AuditSettings()
    notifications: Notifications = Notifications()
