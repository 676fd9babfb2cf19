"""The TOML tables as pydantic models: what each key may hold, checked one table at a time.

`[motherduck]` MotherDuckSettings, `[state]` StateSettings, `[audit]` AuditSettings,
`[notifications]` Notifications, `[defaults]` and the per-account overrides Policy (with
its `checks` entries, CheckSpec, and its `hooks` table, Hooks of HookSpec); RawConfig is
the whole document and RawAccount one `[[accounts]]` table before its overrides are
merged. Unknown keys are refused. Rules across tables (lease timing, checks that build,
ttl against rotate_before_expiry) are rotator/config/rules.py's.

This is the reference validation and the source of every error message; it is imported
only when the hand-written check of the common config (rotator/config/fast.py) declines
a file. `to_plain` turns a validated model into the pydantic-free type of the same name
(rotator/config/types.py) that the rest of the tool reads. Keep the class names: pydantic
names them in some messages ("Input should be a valid dictionary or instance of Hooks").
"""

from __future__ import annotations

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

from backends._aws_config import secret_id_rule
from backends.base import optional
from rotator.config import types, values
from rotator.durations import parse_duration
from rotator.netpolicy import check_aws_region

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HookSpec(Strict):
    command: tuple[str, ...] = Field(min_length=1)
    timeout: Duration = timedelta(seconds=60)
    on_error: Literal["rollback", "warn"] = "rollback"
    pass_token: bool = False
    env: Mapping[str, str] = Field(default_factory=dict)

    @field_validator("timeout")
    @classmethod
    def _timeout_above_zero(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):  # the hook would be stopped before it ran: always a failure
            raise ValueError("must be above 0s")
        return value


class Hooks(Strict):
    after_store: HookSpec | None = None
    after_promote: HookSpec | None = None
    after_revoke: HookSpec | None = None
    on_failure: HookSpec | None = None

    @field_validator("after_revoke", "on_failure")
    @classmethod
    def _cannot_roll_back(cls, spec: HookSpec | None, info: ValidationInfo) -> HookSpec | None:
        # `rollback` is the default for every hook and acts as `warn` here; written out,
        # it says the author expects a rollback that cannot happen.
        if spec is not None and "on_error" in spec.model_fields_set and spec.on_error == "rollback":
            why = (
                "the old token is already revoked, there is nothing to roll back to"
                if info.field_name == "after_revoke"
                else "it runs once the run has already failed"
            )
            raise ValueError(f'on_error = "rollback" cannot apply: {why}; use "warn"')
        return spec


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

    _settle_range = field_validator("create_settle")(values.settle_range)
    _env_name = field_validator("admin_token_env")(values.env_name)
    _secret_id = field_validator("admin_token_secret_id")(optional(secret_id_rule))

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        return values.api_url(value, insecure=bool(info.data.get("insecure")))


class StateSettings(Strict):
    store: Literal["file", "dynamodb"] = "file"
    path: str = ".rotator-state"
    table: str | None = None
    region: str | None = None
    # Plain http to a host other than loopback: refused unless this says so (before
    # endpoint_url, whose validator reads it).
    insecure: bool = False
    endpoint_url: str | None = None
    # Retention (rotator/config/keep.py; pruning in rotator/ops/retention.py): finished runs
    # older than a duration ("90d") or beyond a count per account (90) are removed by
    # `rotator state prune` and after a pass.
    keep_runs: str | int | None = None

    _keep_runs = field_validator("keep_runs")(values.keep_runs)
    _region = field_validator("region")(check_aws_region)
    _path = field_validator("path")(values.nonempty)
    _table = field_validator("table")(optional(values.dynamodb_table))

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return values.aws_endpoint_url(value, insecure=bool(info.data.get("insecure")))

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
        if not values.HTTP_URL_RE.match(value):
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
        base = {k: v for k, v in value.items() if k in values.CHECK_KEYS}
        base["options"] = {k: v for k, v in value.items() if k not in values.CHECK_KEYS}
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

    _window = field_validator("window")(values.window)
    _spread_range = field_validator("spread")(values.spread_range)
    _ttl_range = field_validator("ttl")(values.ttl_range)
    _lease_floor = field_validator("lease_ttl")(values.lease_floor)


class RawAccount(BaseModel):
    """First pass over `[[accounts]]`: policy overrides ride along as extras."""

    model_config = ConfigDict(extra="allow")

    username: str
    backends: list[dict[str, Any]] = Field(min_length=1)

    _username = field_validator("username")(values.username)


class RawConfig(Strict):
    motherduck: MotherDuckSettings = MotherDuckSettings()
    state: StateSettings = StateSettings()
    defaults: dict[str, Any] = Field(default_factory=dict)
    accounts: list[dict[str, Any]] = Field(default_factory=list)
    audit: AuditSettings = AuditSettings()
    notifications: Notifications = Notifications()


def to_plain(value: Any) -> Any:
    """A validated model (and the models, tuples and lists in it) as rotator/config/types.py's.

    Each model becomes the dataclass of its own class name, field by field; anything else
    is kept as it is (durations, strings, the `options` and `env` mappings).
    """
    if isinstance(value, BaseModel):
        plain = getattr(types, type(value).__name__)
        return plain(**{name: to_plain(getattr(value, name)) for name in type(value).model_fields})
    if isinstance(value, tuple):
        return tuple(to_plain(item) for item in value)
    return value
