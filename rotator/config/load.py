"""Reading a config: the file, the TOML, every table, `[defaults]` merged into each account.

`parse_config` validates each table (rotator/config/schema.py), then the rules across
keys and tables: checks that build, ttl against rotate_before_expiry, lease_ttl against
`[motherduck]` create_settle and timeout; backend tables go to the backend's own model.
It reports every problem it finds, not just the first (rotator/config/problems.py), and
returns the frozen Config (rotator/config/resolved.py).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backends import BackendConfig, validate_config
from rotator.config.problems import config_error, did_you_mean, format_errors, validate
from rotator.config.resolved import AccountConfig, Config
from rotator.config.schema import MotherDuckSettings, Policy, RawAccount, RawConfig
from rotator.durations import format_duration
from rotator.errors import ConfigError

_POLICY_FIELDS = tuple(Policy.model_fields)
# A token that comes due sooner than this after it is made is replaced by every run.
MIN_TOKEN_LIFE = timedelta(days=1)


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
    raw = validate(RawConfig, data, "", problems)
    bad_sections: set[str] = set()
    if raw is None:
        # Report the other sections' problems too: validate again without those at fault.
        bad_sections = {
            key for key in data if validate(RawConfig, {key: data[key]}, "", []) is None
        }
        raw = validate(RawConfig, {k: v for k, v in data.items() if k not in bad_sections},
                       "", [])
        if raw is None:
            raise config_error(source, problems)
    defaults, bad_keys = _validate_policy(raw.defaults, "defaults", problems)
    # A mistake in [defaults] is reported once, there: accounts inherit only the good keys.
    inherited = {k: v for k, v in raw.defaults.items() if k not in bad_keys}
    # The rules across keys (ttl against rotate_before_expiry, lease_ttl against the
    # settle window) are checked on the good keys too, so one typo hides no other problem.
    good = defaults if defaults is not None else validate(Policy, inherited, "defaults", [])
    if good is not None:
        _check_checks(good, "defaults", raw.motherduck.api_url, problems)
        _check_policy(good, "defaults", problems)
        if "motherduck" not in bad_sections:  # the rule needs its create_settle and timeout
            _check_lease_timing(good, "defaults", raw.motherduck, problems)
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for i, raw_account in enumerate(raw.accounts):
        account = _account(raw_account, f"accounts[{i}]", inherited, problems)
        if account is None:
            continue
        if "checks" in raw_account:
            _check_checks(account.policy, f"accounts[{i}]", raw.motherduck.api_url, problems)
        if {"ttl", "rotate_before_expiry"} & set(raw_account):
            _check_policy(account.policy, f"accounts[{i}]", problems)
        if "lease_ttl" in raw_account and "motherduck" not in bad_sections:
            _check_lease_timing(account.policy, f"accounts[{i}]", raw.motherduck, problems)
        if account.username.lower() in seen:
            problems.append(f"accounts[{i}].username: {account.username!r} is configured twice")
        seen.add(account.username.lower())
        accounts.append(account)
    if problems or defaults is None:
        raise config_error(source, problems)
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
    raw = validate(RawAccount, data, where, problems)
    if raw is None:
        return None
    overrides = dict(raw.model_extra or {})
    unknown = sorted(set(overrides) - set(_POLICY_FIELDS))
    for key in unknown:
        known = [*_POLICY_FIELDS, *RawAccount.model_fields]
        problems.append(f"{where}.{key}: unknown field{did_you_mean(key, known)}")
    known_overrides = {k: v for k, v in overrides.items() if k in _POLICY_FIELDS}
    policy = validate(Policy, {**defaults, **known_overrides}, where, problems)
    backends: list[BackendConfig] = []
    for j, table in enumerate(raw.backends):
        path = f"{where}.backends[{j}]"
        try:
            backends.append(validate_config(table))
        except ConfigError as exc:
            problems.append(f"{path}.{exc}")
        except ValidationError as exc:
            problems.extend(format_errors(exc, path))
    if policy is None or unknown or len(backends) != len(raw.backends):
        return None
    return AccountConfig(username=raw.username, backends=tuple(backends), policy=policy)


def _check_lease_timing(
    policy: Policy, where: str, md: MotherDuckSettings, problems: list[str]
) -> None:
    from rotator.state.lease import lease_timing_problem

    problem = lease_timing_problem(policy.lease_ttl, md.create_settle, md.timeout)
    if problem:
        problems.append(f"{where}.lease_ttl: {problem}")


def _check_checks(policy: Policy, where: str, api_url: str, problems: list[str]) -> None:
    """Build each check once so a bad type or option fails at load, before anything runs."""
    from rotator.verify.checks import build_check

    for i, spec in enumerate(policy.checks):
        try:
            build_check(spec.type, spec.options, api_url=api_url)
        except ConfigError as exc:
            problems.append(f"{where}.checks[{i}]: {exc}")


def _validate_policy(
    data: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[Policy | None, set[str]]:
    """The `[defaults]` policy, and the keys at fault (unknown, or with a bad value)."""
    try:
        return Policy.model_validate(data), set()
    except ValidationError as exc:
        problems.extend(format_errors(exc, where, Policy))
        return None, {str(err["loc"][0]) for err in exc.errors() if err["loc"]}


def _check_policy(policy: Policy, where: str, problems: list[str]) -> None:
    """Refuse a policy under which every run rotates: a ttl'd token due as soon as made.

    A token is due `rotate_before_expiry` before it expires, so it serves for
    `ttl - rotate_before_expiry`; below MIN_TOKEN_LIFE each run (hourly under Lambda,
    daily under cron) mints a new one. A short `rotate_after` is a deliberate choice.
    """
    if policy.ttl is None:
        return
    life = policy.ttl - policy.rotate_before_expiry
    if life < MIN_TOKEN_LIFE:
        problems.append(
            f"{where}.ttl: {format_duration(policy.ttl)} must exceed rotate_before_expiry "
            f"({format_duration(policy.rotate_before_expiry)}) by at least "
            f"{format_duration(MIN_TOKEN_LIFE)}, or each token is due "
            f"{format_duration(max(life, timedelta(0)))} after it is made and every run "
            "rotates; raise ttl or lower rotate_before_expiry"
        )
