"""The reference loader: every table through its pydantic model, every problem reported.

Used when the hand-written check of the common config (rotator/config/fast.py) declines
a file: anything it does not know, and every file with a mistake in it. It validates
each table (rotator/config/schema.py), then the rules across keys and tables
(rotator/config/rules.py); backend tables go to the backend's own model. It reports
every problem it finds, not just the first (rotator/config/problems.py), and returns the
frozen Config (rotator/config/resolved.py) with its tables as rotator/config/types.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backends import BackendConfig, validate_config
from rotator.config.problems import config_error, did_you_mean, format_errors, validate
from rotator.config.resolved import AccountConfig, Config
from rotator.config.rules import (
    check_checks,
    check_lease_timing,
    check_policy,
    check_step_timeouts,
)
from rotator.config.schema import Policy, RawAccount, RawConfig, to_plain
from rotator.errors import ConfigError

_POLICY_FIELDS = tuple(Policy.model_fields)


def parse_tables(data: dict[str, Any], *, base_dir: Path, source: str) -> Config:
    """Validate parsed TOML. Raises ConfigError with every problem, the first in the message."""
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
    md = to_plain(raw.motherduck)
    if good is not None:
        good = to_plain(good)  # the rules read the same types whichever loader calls them
        check_checks(good, "defaults", md.api_url, problems)
        check_policy(good, "defaults", problems)
        if "motherduck" not in bad_sections:  # the rule needs its create_settle and timeout
            check_lease_timing(good, "defaults", md, problems)
        check_step_timeouts(good, "defaults", md.api_url, problems)
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for i, raw_account in enumerate(raw.accounts):
        account = _account(raw_account, f"accounts[{i}]", inherited, problems)
        if account is None:
            continue
        if "checks" in raw_account:
            check_checks(account.policy, f"accounts[{i}]", md.api_url, problems)
        if {"ttl", "rotate_before_expiry"} & set(raw_account):
            check_policy(account.policy, f"accounts[{i}]", problems)
        if "lease_ttl" in raw_account and "motherduck" not in bad_sections:
            check_lease_timing(account.policy, f"accounts[{i}]", md, problems)
        if {"checks", "hooks", "lease_ttl"} & set(raw_account):
            check_step_timeouts(account.policy, f"accounts[{i}]", md.api_url, problems)
        if account.username.lower() in seen:
            problems.append(f"accounts[{i}].username: {account.username!r} is configured twice")
        seen.add(account.username.lower())
        accounts.append(account)
    if problems or defaults is None:
        raise config_error(source, problems)
    return Config(
        md,
        to_plain(raw.state),
        to_plain(defaults),
        tuple(accounts),
        base_dir,
        source,
        audit=to_plain(raw.audit),
        notifications=to_plain(raw.notifications),
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
    return AccountConfig(username=raw.username, backends=tuple(backends), policy=to_plain(policy))


def _validate_policy(
    data: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[Policy | None, set[str]]:
    """The `[defaults]` policy, and the keys at fault (unknown, or with a bad value)."""
    try:
        return Policy.model_validate(data), set()
    except ValidationError as exc:
        problems.extend(format_errors(exc, where, Policy))
        return None, {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
