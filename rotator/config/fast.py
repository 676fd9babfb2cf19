"""The common config, checked without pydantic: a valid file loads in ~1 ms instead of ~85.

pydantic and the config models cost ~65 ms to import and ~20 ms to build, at every
start of `rotator` and every Lambda cold start, to validate a file that is nearly always
valid. This loader accepts a file only when it can show that the reference loader
(rotator/config/slow.py, the pydantic models) would accept it and produce the same
Config; at the first thing it is not sure of it declines (returns None) and the
reference loader reads the file, so every error message stays pydantic's.

What it accepts: the tables `[motherduck]`, `[state]`, `[audit]`, `[defaults]` and
`[[accounts]]` with their known keys, each value of the exact type the model wants
(strings for strings, true/false for booleans, integers for integers) and passing the
same value checks (rotator/config/values.py, shared with the models); policy `checks`
as names or tables; backends of the built-in `file`, `aws-secrets-manager` and `vault`
types.
It declines: any unknown key, any value of another type (even one pydantic would
convert), `hooks`, `[notifications]`, any other backend type, any value check that
fails. The rules across tables (rotator/config/rules.py) then run exactly as the
reference loader runs them.

tests/unit/test_config_fastpath.py runs both loaders over the configs of the tests and
over mutated variants of them, and requires the same Config or the same problems.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from backends import _aws_config as _aws
from backends.base import CheckedTable, env_name, printable, slash_path
from rotator.config import types, values
from rotator.config.problems import config_error
from rotator.config.resolved import AccountConfig, Config
from rotator.config.rules import (
    check_checks,
    check_lease_timing,
    check_policy,
    check_step_timeouts,
)
from rotator.durations import parse_duration
from rotator.netpolicy import check_aws_region, http_base_url, insecure_reason

_T = TypeVar("_T")

_TOP = frozenset({"motherduck", "state", "defaults", "accounts", "audit"})
_MOTHERDUCK = frozenset(types.MotherDuckSettings.__dataclass_fields__)
_STATE = frozenset(types.StateSettings.__dataclass_fields__)
_AUDIT = frozenset(types.AuditSettings.__dataclass_fields__)
_POLICY = frozenset(types.POLICY_FIELDS) - {"hooks"}
_FILE_BACKEND = frozenset({"type", "format", "path", "follow_symlinks"})


class _Decline(Exception):
    """Not provably what the reference loader would accept: it decides instead."""


def parse_tables(data: dict[str, Any], *, base_dir: Path, source: str) -> Config | None:
    """The Config of parsed TOML, ConfigError for a rule across tables, None to decline."""
    try:
        md, state, audit, defaults, accounts = _tables(data)
    except _Decline:
        return None
    # The reference loader's rules, in its order; with every table valid, it adds nothing.
    problems: list[str] = []
    check_checks(defaults, "defaults", md.api_url, problems)
    check_policy(defaults, "defaults", problems)
    check_lease_timing(defaults, "defaults", md, problems)
    check_step_timeouts(defaults, "defaults", md.api_url, problems)
    seen: set[str] = set()
    for i, (raw_account, account) in enumerate(accounts):
        if "checks" in raw_account:
            check_checks(account.policy, f"accounts[{i}]", md.api_url, problems)
        if {"ttl", "rotate_before_expiry"} & set(raw_account):
            check_policy(account.policy, f"accounts[{i}]", problems)
        if "lease_ttl" in raw_account:
            check_lease_timing(account.policy, f"accounts[{i}]", md, problems)
        if {"checks", "hooks", "lease_ttl"} & set(raw_account):
            check_step_timeouts(account.policy, f"accounts[{i}]", md.api_url, problems)
        if account.username.lower() in seen:
            problems.append(f"accounts[{i}].username: {account.username!r} is configured twice")
        seen.add(account.username.lower())
    if problems:
        raise config_error(source, problems)
    return Config(
        md, state, defaults, tuple(a for _, a in accounts), base_dir, source, audit=audit
    )


def _tables(data: dict[str, Any]) -> tuple[
    types.MotherDuckSettings,
    types.StateSettings,
    types.AuditSettings,
    types.Policy,
    list[tuple[dict[str, Any], AccountConfig]],
]:
    _keys(data, _TOP)
    md = _motherduck(_keys(data.get("motherduck", {}), _MOTHERDUCK))
    state = _state(_keys(data.get("state", {}), _STATE))
    audit_table = _keys(data.get("audit", {}), _AUDIT)
    audit = types.AuditSettings(
        path=_opt(audit_table, "path", _str, None), fsync=_opt(audit_table, "fsync", _bool, False)
    )
    inherited = _keys(data.get("defaults", {}), _POLICY)
    defaults = _policy(inherited)
    raw_accounts = data.get("accounts", [])
    if type(raw_accounts) is not list:
        raise _Decline
    accounts = [(raw, _account(raw, inherited)) for raw in raw_accounts]
    return md, state, audit, defaults, accounts


def _motherduck(table: dict[str, Any]) -> types.MotherDuckSettings:
    insecure = _opt(table, "insecure", _bool, False)
    return types.MotherDuckSettings(
        insecure=insecure,
        api_url=_opt(
            table, "api_url", lambda v: values.api_url(_str(v), insecure=insecure),
            "https://api.motherduck.com",
        ),
        admin_token_env=_opt(
            table, "admin_token_env", lambda v: values.env_name(_str(v)), "MOTHERDUCK_ADMIN_TOKEN"
        ),
        admin_token_secret_id=_opt(
            table, "admin_token_secret_id", lambda v: _aws.secret_id_rule(_nonempty(v)), None
        ),
        timeout=_opt(table, "timeout", _duration, timedelta(seconds=10)),
        create_settle=_opt(
            table, "create_settle", lambda v: values.settle_range(_duration(v)),
            timedelta(seconds=60),
        ),
    )


def _state(table: dict[str, Any]) -> types.StateSettings:
    insecure = _opt(table, "insecure", _bool, False)
    return types.StateSettings(
        store=_opt(table, "store", lambda v: _one_of(v, "file", "dynamodb"), "file"),
        path=_opt(table, "path", lambda v: values.nonempty(_str(v)), ".rotator-state"),
        table=_opt(table, "table", lambda v: values.dynamodb_table(_str(v)), None),
        region=_opt(table, "region", lambda v: check_aws_region(_str(v)), None),
        insecure=insecure,
        endpoint_url=_opt(
            table, "endpoint_url",
            lambda v: values.aws_endpoint_url(_str(v), insecure=insecure), None,
        ),
        keep_runs=_opt(table, "keep_runs", _keep_runs, None),
        clock_skew=_opt(table, "clock_skew", _duration, timedelta(seconds=5)),
    )


def _keep_runs(value: object) -> str | int:
    if type(value) is not str and type(value) is not int:
        raise _Decline  # a bool, a float: pydantic's union rules decide
    values.keep_runs(value)
    return value


def _policy(table: dict[str, Any]) -> types.Policy:
    return types.Policy(
        token_type=_opt(
            table, "token_type", lambda v: _one_of(v, "read_write", "read_scaling"), "read_write"
        ),
        ttl=_opt(table, "ttl", lambda v: values.ttl_range(_duration(v)), None),
        rotate_after=_opt(table, "rotate_after", _duration, timedelta(days=30)),
        rotate_before_expiry=_opt(table, "rotate_before_expiry", _duration, timedelta(days=7)),
        revoke_grace=_opt(table, "revoke_grace", _duration, timedelta(0)),
        confirm_revoked=_opt(table, "confirm_revoked", _bool, False),
        lease_ttl=_opt(
            table, "lease_ttl", lambda v: values.lease_floor(_duration(v)), timedelta(minutes=15)
        ),
        checks=_opt(table, "checks", _checks, (types.CheckSpec(type="readback"),)),
        window=_opt(table, "window", lambda v: values.window(_str(v)), None),
        spread=_opt(table, "spread", lambda v: values.spread_range(_duration(v)), timedelta(0)),
    )


def _checks(value: object) -> tuple[types.CheckSpec, ...]:
    if type(value) is not list:
        raise _Decline
    return tuple(_check(entry) for entry in value)


def _check(entry: object) -> types.CheckSpec:
    if type(entry) is str:
        return types.CheckSpec(type=entry)
    if type(entry) is not dict:
        raise _Decline
    options = {k: v for k, v in entry.items() if k not in values.CHECK_KEYS}
    if "type" not in entry or any(type(k) is not str for k in options):
        raise _Decline
    return types.CheckSpec(
        type=_checked(_str, entry["type"]),
        attempts=_opt(entry, "attempts", lambda v: _int(v, 1, 100), 1),
        interval=_opt(entry, "interval", _duration, timedelta(seconds=2)),
        options=options,
    )


def _account(raw: object, inherited: dict[str, Any]) -> AccountConfig:
    if type(raw) is not dict or "username" not in raw:
        raise _Decline
    overrides = {k: v for k, v in raw.items() if k not in ("username", "backends")}
    _keys(overrides, _POLICY)
    tables = raw.get("backends")
    if type(tables) is not list or not tables:
        raise _Decline
    return AccountConfig(
        username=_checked(lambda v: values.username(_str(v)), raw["username"]),
        policy=_policy({**inherited, **overrides}),
        tables=tuple(_backend_table(t) for t in tables),
    )


def _backend_table(table: object) -> CheckedTable:
    """A table of a built-in type its model would accept as is, kept as the table."""
    kind = table.get("type") if type(table) is dict else None
    if kind == "file":
        _file_table(table)
    elif kind == _aws.TYPE:
        _aws_table(table)
    elif kind == "vault":
        _vault_table(table)
    else:
        raise _Decline
    _builtin(str(kind))
    return CheckedTable(cast(dict[str, Any], table))


def _file_table(table: object) -> None:
    """A `type = "file"` table the built-in FileBackend's FileConfig would accept."""
    table = _keys(table, _FILE_BACKEND)
    if "path" not in table:
        raise _Decline
    path = _str(table["path"])
    if not path or not path.isprintable():
        raise _Decline  # FileConfig says what is wrong with it
    _opt(table, "format", lambda v: _one_of(v, "json", "raw"), "json")
    _opt(table, "follow_symlinks", _bool, False)


def _aws_table(table: object) -> None:
    """An `aws-secrets-manager` table its SecretsManagerConfig would accept, as is."""
    table = _keys(table, _aws.FIELDS)
    if "secret_id" not in table:
        raise _Decline
    secret_id = _checked(lambda v: _aws.secret_id_rule(_nonempty(v)), table["secret_id"])
    region = _opt(table, "region", lambda v: check_aws_region(_str(v)), None)
    insecure = _opt(table, "insecure", _bool, False)
    _opt(table, "endpoint_url", lambda v: values.aws_endpoint_url(_str(v), insecure=insecure), "")
    for key in ("kms_key_id", "profile"):
        _opt(table, key, lambda v: printable(_str(v)), None)
    create = _opt(table, "create_if_missing", _bool, False)
    no_tags: dict[str, str] = {}
    _opt(table, "tags", lambda v: _aws.own_tags(_str_dict(v)), no_tags)
    _opt(table, "format", lambda v: _one_of(v, "json", "raw"), "json")
    _checked(lambda _: _aws.one_region(secret_id, region, create), None)


def _vault_table(table: object) -> None:
    """A `type = "vault"` table its VaultConfig would accept and keep as written: a value
    the model would change (slashes stripped from mount/path/url) declines."""
    # Imported for a vault table only (~3 ms): most configs have none.
    from backends import _vault_auth as _vault

    table = _keys(table, _vault.FIELDS)
    if "url" not in table or "path" not in table:
        raise _Decline
    url = _checked(_str, table["url"])
    try:
        kept = http_base_url(url, example="")
    except ValueError:
        raise _Decline from None  # the model says what is wrong with it
    if kept != url:
        raise _Decline
    _checked(_kv_segment, table["path"])
    _opt(table, "mount", _kv_segment, "secret")
    for key in ("namespace", "field"):
        _opt(table, key, lambda v: printable(_str(v)), None)
    _opt(table, "ca_cert", _str, None)
    verify = _opt(table, "verify", _bool, True)
    insecure = _opt(table, "insecure", _bool, False)
    _opt(table, "timeout", _positive, 10.0)
    _opt(table, "auth", _vault_auth, None)
    _opt(table, "format", lambda v: _one_of(v, "json", "raw"), "json")
    if insecure_reason(url, verify=verify) and not insecure:
        raise _Decline


def _kv_segment(value: object) -> str:
    if type(value) is not str or not value or value != value.strip("/"):
        raise _Decline
    return slash_path(value)


def _positive(value: object) -> float:
    """A float field: an int or a float (pydantic makes either a float), finite, above 0."""
    if type(value) not in (int, float) or not 0 < value < 2**53:  # type: ignore[operator]
        raise _Decline
    return float(value)  # type: ignore[arg-type]


def _vault_auth(value: object) -> None:
    """An `auth` table of one of the four methods, each key of its exact type."""
    from backends import _vault_auth as _vault

    if type(value) is not dict:
        raise _Decline
    method = value.get("method", "token")
    if type(method) is not str or method not in _vault.AUTH_FIELDS:
        raise _Decline
    _keys(value, _vault.AUTH_FIELDS[method])
    if method in ("kubernetes", "aws") and "role" not in value:
        raise _Decline
    for key in _vault.AUTH_FIELDS[method] - {"method", "region"}:
        if key in value:
            _checked(partial(_vault_value, key), _str(value[key]))
    _opt(value, "region", lambda v: check_aws_region(_str(v)), None)
    if method == "approle" and ("role_id" in value) == ("role_id_env" in value):
        raise _Decline  # exactly one of them


def _vault_value(key: str, value: str) -> str:
    """An auth key's value as backends/models/vault.py checks it (a failure declines)."""
    if key.endswith("_env"):
        return env_name(value)
    if key == "mount":
        slash_path(value.strip("/"))
        return value
    return printable(value)


def _builtin(kind: str) -> None:
    """The entry point named `kind` must be the built-in backend, as the reference loader
    would find it (a missing or broken one is its error to report)."""
    from backends import load_factory

    try:
        factory = cast(object, load_factory(kind))
    except Exception:
        raise _Decline from None
    if kind == "file":
        from backends.file import FileBackend as builtin
    elif kind == "vault":
        from backends.vault import VaultBackend as builtin  # type: ignore[assignment]
    else:
        from backends.aws_secrets_manager import SecretsManagerBackend as builtin  # type: ignore[assignment]
    if factory is not builtin:
        raise _Decline


def _keys(table: object, allowed: frozenset[str]) -> dict[str, Any]:
    if type(table) is not dict or not table.keys() <= allowed:
        raise _Decline
    return table


def _opt(table: dict[str, Any], key: str, check: Callable[[Any], _T], default: _T) -> _T:
    """`check(table[key])`, or `default` when the key is absent; any failure declines."""
    if key not in table:
        return default
    return _checked(check, table[key])


def _checked(check: Callable[[Any], _T], value: object) -> _T:
    """`check(value)`; a check that fails (ValueError, or anything else) declines."""
    try:
        return check(value)
    except _Decline:
        raise
    except Exception:
        raise _Decline from None


def _str(value: object) -> str:
    if type(value) is not str:
        raise _Decline
    return value


def _nonempty(value: object) -> str:
    if type(value) is not str or not value:
        raise _Decline
    return value


def _str_dict(value: object) -> dict[str, str]:
    if type(value) is not dict or any(type(k) is not str or type(v) is not str
                                      for k, v in value.items()):
        raise _Decline
    return value


def _one_of(value: object, *allowed: str) -> Any:
    """A Literal field: one of `allowed`, exactly (Any: the caller's Literal type)."""
    if type(value) is not str or value not in allowed:
        raise _Decline
    return value


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise _Decline
    return value


def _int(value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _Decline
    return value


def _duration(value: object) -> timedelta:
    if type(value) not in (str, int):
        raise _Decline
    result = parse_duration(value)
    if type(result) is not timedelta:
        raise _Decline
    return result
