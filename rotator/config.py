"""TOML configuration -> validated, frozen models, with errors that name the field path.

Shape (extend, don't rename):

    [motherduck]  api_url, admin_token_env, admin_token_secret_id, timeout, create_settle
    [state]       store = "file" | "dynamodb", path
    [defaults]    token_type, ttl, rotate_after, revoke_grace, checks, ...
    [[accounts]]  username, overrides of any default, [[accounts.backends]]
    [audit]       path, fsync (the JSONL audit trail; docs/operations.md)
    [notifications]  on_success, on_failure: lists of webhook/slack targets

Every problem is reported as `accounts[0].backends[1].path: <what is wrong>`; unknown keys
are rejected. Backend tables are validated by the backend's own `Config` model.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from backends import BackendConfig, validate_config
from rotator.durations import parse_duration
from rotator.errors import ConfigError
from rotator.hooks import Hooks

__all__ = [
    "AccountConfig",
    "AuditSettings",
    "Config",
    "MotherDuckSettings",
    "NotificationTarget",
    "Notifications",
    "Policy",
    "StateSettings",
    "default_config_path",
    "load_config",
    "parse_config",
]

_M = TypeVar("_M", bound=BaseModel)
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,254}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotherDuckSettings(_Strict):
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
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL such as https://api.motherduck.com")
        return value.rstrip("/")

    @field_validator("admin_token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_NAME_RE.match(value):
            raise ValueError("must be an environment variable name")
        return value


class StateSettings(_Strict):
    store: Literal["file", "dynamodb"] = "file"
    path: str = ".rotator-state"
    table: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    # DynamoDB: how far hosts' clocks may disagree; a lease is taken over only once it
    # expired by more than this on the taker's clock.
    clock_skew: Duration = timedelta(seconds=5)


class AuditSettings(_Strict):
    """Where the append-only audit trail goes: `<state path>/audit.jsonl` unless `path` is set.

    With the DynamoDB store and no `path`, events go to the log as `audit.recorded` lines
    (the run record keeps its own `events` list).
    """

    path: str | None = None
    fsync: bool = False


class NotificationTarget(_Strict):
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


class Notifications(_Strict):
    on_success: tuple[NotificationTarget, ...] = ()
    on_failure: tuple[NotificationTarget, ...] = ()


class CheckSpec(_Strict):
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


class Policy(_Strict):
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


_POLICY_FIELDS = tuple(Policy.model_fields)


class AccountConfig(_Strict):
    username: str
    backends: tuple[BackendConfig, ...]
    policy: Policy

    @property
    def name(self) -> str:
        return self.username


class _RawAccount(BaseModel):
    """First pass over `[[accounts]]`: policy overrides ride along as extras."""

    model_config = ConfigDict(extra="allow")

    username: str
    backends: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not USERNAME_RE.match(value):
            raise ValueError(
                "must be 3-255 characters, start with a letter, letters/digits/underscore only"
            )
        return value


class _RawConfig(_Strict):
    motherduck: MotherDuckSettings = MotherDuckSettings()
    state: StateSettings = StateSettings()
    defaults: dict[str, Any] = Field(default_factory=dict)
    accounts: list[dict[str, Any]] = Field(default_factory=list)
    audit: AuditSettings = AuditSettings()
    notifications: Notifications = Notifications()


@dataclass(frozen=True, slots=True)
class Config:
    motherduck: MotherDuckSettings
    state: StateSettings
    defaults: Policy
    accounts: tuple[AccountConfig, ...]
    base_dir: Path
    source: str
    audit: AuditSettings = field(default_factory=AuditSettings)
    notifications: Notifications = field(default_factory=Notifications)

    def account(self, username: str) -> AccountConfig:
        for account in self.accounts:
            if account.username.lower() == username.lower():
                return account
        known = ", ".join(a.username for a in self.accounts) or "none"
        raise ConfigError(f"account {username!r} is not in {self.source} (configured: {known})")

    @property
    def state_path(self) -> Path:
        path = Path(self.state.path)
        return path if path.is_absolute() else self.base_dir / path

    @property
    def audit_path(self) -> Path | None:
        """The audit file, or None when events go to the log (DynamoDB store, no path)."""
        if self.audit.path:
            path = Path(self.audit.path)
            return path if path.is_absolute() else self.base_dir / path
        return self.state_path / "audit.jsonl" if self.state.store == "file" else None


def default_config_path(explicit: str | None = None) -> Path:
    """`--config`, else `$ROTATOR_CONFIG`, else `./rotator.toml`."""
    return Path(explicit or os.environ.get("ROTATOR_CONFIG") or "rotator.toml")


def load_config(path: Path) -> Config:
    """Read and validate a TOML config file. Raises ConfigError naming the field at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found (use --config or $ROTATOR_CONFIG)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    return parse_config(text, base_dir=path.resolve().parent, source=str(path))


def parse_config(text: str, *, base_dir: Path, source: str = "<config>") -> Config:
    """Validate TOML text. Raises ConfigError with every problem, the first in the message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    problems: list[str] = []
    raw = _validate(_RawConfig, data, "", problems)
    if raw is None:
        raise _config_error(source, problems)
    defaults = _validate(Policy, raw.defaults, "defaults", problems)
    if defaults is not None:
        _check_checks(defaults, "defaults", raw.motherduck.api_url, problems)
        _check_lease_timing(defaults, "defaults", raw.motherduck, problems)
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for i, raw_account in enumerate(raw.accounts):
        account = _account(raw_account, f"accounts[{i}]", raw.defaults, problems)
        if account is None:
            continue
        if "checks" in raw_account:
            _check_checks(account.policy, f"accounts[{i}]", raw.motherduck.api_url, problems)
        if "lease_ttl" in raw_account:
            _check_lease_timing(account.policy, f"accounts[{i}]", raw.motherduck, problems)
        if account.username.lower() in seen:
            problems.append(f"accounts[{i}].username: {account.username!r} is configured twice")
        seen.add(account.username.lower())
        accounts.append(account)
    if problems or defaults is None:
        raise _config_error(source, problems)
    return Config(
        raw.motherduck,
        raw.state,
        defaults,
        tuple(accounts),
        base_dir,
        source,
        audit=raw.audit,
        notifications=raw.notifications,
    )


def _account(
    data: dict[str, Any], where: str, defaults: Mapping[str, Any], problems: list[str]
) -> AccountConfig | None:
    raw = _validate(_RawAccount, data, where, problems)
    if raw is None:
        return None
    overrides = dict(raw.model_extra or {})
    unknown = sorted(set(overrides) - set(_POLICY_FIELDS))
    for key in unknown:
        problems.append(f"{where}.{key}: unknown field")
    policy = _validate(Policy, {**defaults, **overrides}, where, problems)
    backends: list[BackendConfig] = []
    for j, table in enumerate(raw.backends):
        path = f"{where}.backends[{j}]"
        try:
            backends.append(validate_config(table))
        except ConfigError as exc:
            problems.append(f"{path}.{exc}")
        except ValidationError as exc:
            problems.extend(_format_errors(exc, path))
    if policy is None or unknown or len(backends) != len(raw.backends):
        return None
    return AccountConfig(username=raw.username, backends=tuple(backends), policy=policy)


def _check_lease_timing(
    policy: Policy, where: str, md: MotherDuckSettings, problems: list[str]
) -> None:
    from rotator.checkpoint import lease_timing_problem

    problem = lease_timing_problem(policy.lease_ttl, md.create_settle, md.timeout)
    if problem:
        problems.append(f"{where}.lease_ttl: {problem}")


def _check_checks(policy: Policy, where: str, api_url: str, problems: list[str]) -> None:
    """Build each check once so a bad type or option fails at load, before anything runs."""
    from rotator.checks import build_check

    for i, spec in enumerate(policy.checks):
        try:
            build_check(spec.type, spec.options, api_url=api_url)
        except ConfigError as exc:
            problems.append(f"{where}.checks[{i}]: {exc}")


def _validate(model: type[_M], data: object, where: str, problems: list[str]) -> _M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_format_errors(exc, where))
        return None


def _format_errors(exc: ValidationError, where: str) -> list[str]:
    lines = []
    for err in exc.errors():
        path = where
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{path or '<top>'}: {message}")
    return lines


def _config_error(source: str, problems: Sequence[str]) -> ConfigError:
    more = (
        f" (and {len(problems) - 1} more; run `rotator config validate`)"
        if len(problems) > 1
        else ""
    )
    return ConfigError(f"{source}: {problems[0]}{more}", problems=problems)
