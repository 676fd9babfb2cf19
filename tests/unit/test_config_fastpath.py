"""The pydantic-free loader agrees with the reference loader on every file it accepts.

rotator/config/fast.py may only say "valid, and here is the Config" when the pydantic
loader (rotator/config/slow.py) would return the same Config; it may raise only the same
ConfigError (the rules across tables, shared); otherwise it declines and the reference
loader answers. This runs both over realistic configs (the examples, the documentation,
the benchmarks' files, every key set) and over thousands of seeded mutations of them
(wrong types, bounds, unknown keys, other backends...), and compares: same Config (equal
and the same repr, so `1` is not `True`), or the same problems. It also holds the plain
types to the pydantic models' fields and defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import pytest

from rotator.config import fast, schema, slow, types
from rotator.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BASE_DIR = Path("/srv/rotator")

FILE_ACCOUNT = """
[[accounts]]
username = "{name}"
  [[accounts.backends]]
  type = "file"
  path = "secrets/{name}.json"
"""
LAMBDA = (  # what benchmarks/bench_lambda.py writes: DynamoDB state, file backends
    '[motherduck]\napi_url = "http://127.0.0.1:8123"\nadmin_token_env = "MD_ADMIN"\n'
    '[state]\npath = "state"\nstore = "dynamodb"\ntable = "rotator-bench"\n'
    'region = "us-east-1"\nendpoint_url = "http://127.0.0.1:5000"\n'
    '[defaults]\nchecks = ["readback"]\nrevoke_grace = "0s"\nrotate_after = "30d"\n'
    + "".join(FILE_ACCOUNT.format(name=f"svc_lambda_{i}") for i in range(3))
)
SINGLE = (  # benchmarks/bench_single.py and the startup benchmark
    '[motherduck]\napi_url = "http://127.0.0.1:9"\n[state]\npath = "state"\n'
    '[defaults]\nrotate_after = "30d"\n' + FILE_ACCOUNT.format(name="svc_single")
)
EVERY_KEY = """
[motherduck]
insecure = true
api_url = "http://md.internal:8080/"
admin_token_env = "MD_TOKEN"
admin_token_secret_id = "md/admin"
timeout = "30s"
create_settle = "2m"

[state]
store = "file"
path = "/var/lib/rotator"
keep_runs = "90d"
clock_skew = 7
table = "rotator-state"
region = "eu-west-1"
endpoint_url = "http://localhost:4566"

[audit]
path = "audit/trail.jsonl"
fsync = true

[defaults]
token_type = "read_scaling"
ttl = "30d"
rotate_after = "20d"
rotate_before_expiry = "3d"
revoke_grace = "1h"
confirm_revoked = true
lease_ttl = "10m"
checks = ["readback", {type = "simulator", attempts = 3, interval = "5s"}]
window = "Mon-Fri 02:00-05:00"
spread = "6h"

[[accounts]]
username = "svc_everything"
ttl = "60d"
rotate_before_expiry = "10d"
lease_ttl = "20m"
checks = [{type = "readback", attempts = 2}]
  [[accounts.backends]]
  type = "file"
  path = "a.json"
  format = "raw"
  follow_symlinks = true
  [[accounts.backends]]
  type = "file"
  path = "b.json"

[[accounts]]
username = "svc_second"
keep = "x"
  [[accounts.backends]]
  type = "file"
  path = "c.json"
"""
MINIMAL = FILE_ACCOUNT.format(name="svc_min")
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:md/app-AbCdEf"
AWS_ACCOUNT = """
[[accounts]]
username = "{name}"
  [[accounts.backends]]
  type = "aws-secrets-manager"
  secret_id = "md/{name}"
  region = "us-east-1"
"""
LAMBDA_AWS = (  # a Lambda deployment: DynamoDB state, one secret per account
    '[motherduck]\nadmin_token_secret_id = "md/admin"\n'
    '[state]\nstore = "dynamodb"\ntable = "rotator"\nregion = "us-east-1"\n'
    '[defaults]\nchecks = ["readback"]\n'
    + "".join(AWS_ACCOUNT.format(name=f"svc_aws_{i}") for i in range(3))
)
EVERY_AWS_KEY = f"""
[[accounts]]
username = "svc_aws_every"
  [[accounts.backends]]
  type = "aws-secrets-manager"
  secret_id = "md/every"
  region = "eu-west-1"
  endpoint_url = "http://127.0.0.1:5000"
  kms_key_id = "alias/rotator"
  create_if_missing = true
  tags = {{team = "data", env = "prod"}}
  profile = "ops"
  format = "raw"
  [[accounts.backends]]
  type = "aws-secrets-manager"
  secret_id = "{ARN}"
  region = "eu-west-1"
  [[accounts.backends]]
  type = "file"
  path = "local.json"
"""

VAULT_ACCOUNT = """
[[accounts]]
username = "{name}"
  [[accounts.backends]]
  type = "vault"
  url = "https://vault.example:8200"
  path = "md/{name}"
"""
EVERY_VAULT_KEY = """
[[accounts]]
username = "svc_vault_every"
  [[accounts.backends]]
  type = "vault"
  url = "http://vault.internal:8200"
  mount = "kv"
  path = "apps/md"
  namespace = "team"
  field = "token"
  ca_cert = "ca.pem"
  verify = false
  insecure = true
  timeout = 3
  format = "raw"
  auth = {method = "approle", role_id_env = "RID", secret_id_env = "SID", mount = "ar"}
  [[accounts.backends]]
  type = "vault"
  url = "http://127.0.0.1:8200"
  path = "md/two"
  timeout = 2.5
  auth = {method = "kubernetes", role = "rotator", jwt_path = "jwt", mount = "k8s"}
  [[accounts.backends]]
  type = "vault"
  url = "https://vault.example"
  path = "md/three"
  auth = {method = "aws", role = "rotator", region = "eu-west-1", server_id = "v", mount = "a"}
  [[accounts.backends]]
  type = "vault"
  url = "https://vault.example"
  path = "md/four"
  auth = {token_env = "MY_VAULT_TOKEN"}
"""
VAULT_DOCS = (
    "".join(VAULT_ACCOUNT.format(name=f"svc_vault_{i}") for i in range(2)), EVERY_VAULT_KEY
)


def _documents() -> list[str]:
    docs = [LAMBDA, SINGLE, EVERY_KEY, EVERY_KEY.replace('keep = "x"\n', ""), MINIMAL, ""]
    docs += [LAMBDA_AWS, EVERY_AWS_KEY, *VAULT_DOCS]
    docs += [p.read_text() for p in sorted((REPO / "examples" / "config").glob("*.toml"))]
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        docs += re.findall(r"```toml\n(.*?)```", md.read_text(), re.S)
    return docs


def _outcome(loader: Any, data: dict[str, Any]) -> tuple[str, object]:
    try:
        config = loader.parse_tables(copy.deepcopy(data), base_dir=BASE_DIR, source="t.toml")
    except ConfigError as exc:
        return "error", (str(exc), exc.problems)
    except Exception as exc:  # the reference loader's crash is an answer too
        return "crash", repr(exc)
    if config is None:
        return "declined", None
    for account in config.accounts:
        tables = account.backend_inputs  # the fast loader's checked tables, if it loaded
        account.backends  # noqa: B018  # the checked tables become their models
        if loader is fast:
            _same_backends(tables, account.backends, account.username)
    return "config", (config, repr(config))


def _same_backends(tables: Any, models: Any, username: str) -> None:
    """What the engine builds from each checked table is what it builds from its model."""
    from backends import load_factory

    def built(cfg: Any) -> dict[str, Any]:
        backend = load_factory(cfg.type).from_config(cfg, account=username, base_dir=BASE_DIR)
        return {k: vars(v) if k == "kv" else v for k, v in vars(backend).items()}

    for table, model in zip(tables, models, strict=True):
        from_table, from_model = built(table), built(model)
        assert from_table == from_model, (table, model)
        assert repr(from_table) == repr(from_model), (table, model)


def _agree(data: dict[str, Any]) -> str:
    """Compare the two loaders on `data`; returns the fast loader's kind of answer."""
    kind, got = _outcome(fast, data)
    if kind == "declined":
        return kind
    assert kind != "crash", (data, got)
    ref_kind, ref = _outcome(slow, data)
    assert (kind, got if kind == "error" else got[1]) == (  # type: ignore[index]
        ref_kind, ref if ref_kind == "error" else ref[1]  # type: ignore[index]
    ), data
    if kind == "config":
        assert got[0] == ref[0]  # type: ignore[index]
    return kind


PALETTE: list[object] = [
    "", "x", "svc_ok_name", "1d", "0s", "29s", "30s", "10m", "11m", "299s", "300s", "365d",
    "366d", "3651d", " 5m ", "5 m", "90", "0", 0, 1, -1, 3, 30, 100, 101, 600, 31_536_001,
    True, False, 1.5, [], {}, ["readback"], ["nope"], [{"type": "readback", "attempts": 0}],
    [{"type": "readback", "attempts": 100, "interval": "1s", "extra": 1}], [{"attempts": 2}],
    [3], "Mon-Fri 02:00-05:00", "Sun 25:00-26:00", "http://example.com", "http://127.0.0.1:1/",
    "https://md.example/", "ftp://x", "us-east-1", "Bogus_Region", "file", "dynamodb",
    "read_write", "read_scaling", "json", "raw", "vault", "MY_ENV", "1BAD", "a",
    datetime(2026, 1, 1), {"command": ["true"]}, {"after_store": {"command": ["true"]}},
    # for the aws-secrets-manager tables: ARNs (good, other region, bad region), tags
    "aws-secrets-manager", "eu-west-1", ARN, ARN.replace("eu-west-1", "us-east-1"),
    ARN.replace("eu-west-1", "Bad_Region"), "arn:aws:secretsmanager:eu-west-1:1:secret:x",
    {"team": "data"}, {"rotator:owner": "me"}, {"aws:x": "y"}, {"n": 1}, {"t": True},
    # for the vault tables: urls (tls, loopback, plain, trailing slash), paths, timeouts, auth
    "https://vault.example:8200", "http://127.0.0.1:8200", "http://vault.example",
    "https://vault.example/", "secret/", "/md/x", "a/b", 2.5, 0.0, -1.5, float("inf"),
    {"method": "token", "token_env": "T"}, {"token_env": "T"}, {"method": "approle"},
    {"method": "approle", "role_id": "r"}, {"method": "approle", "role_id": "r", "role_id_env": "E"},
    {"method": "kubernetes", "role": "r"}, {"method": "kubernetes"}, {"method": "ldap"},
    {"method": "aws", "role": "r", "region": "eu-west-1"}, {"method": "aws", "role": "r",
    "region": "Bad"}, {"method": 1}, {"method": "token", "role": "r"},
]
KEYS = {
    "motherduck": [*types.MotherDuckSettings.__dataclass_fields__, "bogus"],
    "state": [*types.StateSettings.__dataclass_fields__, "stor"],
    "audit": [*types.AuditSettings.__dataclass_fields__, "fsyn"],
    "defaults": [*types.POLICY_FIELDS, "rotate_afte", "username"],
    "notifications": ["on_success", "on_failure"],
}
ACCOUNT_KEYS = ["username", "backends", *types.POLICY_FIELDS, "rotate_aftr"]
BACKEND_KEYS = [
    "type", "path", "format", "follow_symlinks", "url", "pathh",
    "secret_id", "region", "endpoint_url", "kms_key_id", "create_if_missing", "tags", "profile",
    "mount", "namespace", "field", "ca_cert", "verify", "insecure", "timeout", "auth",
]


def _mutate(data: dict[str, Any], rng: random.Random) -> None:
    """One random change: a value replaced or removed, a key added, a table replaced."""
    where = rng.choice(["table", "table", "account", "backend", "top"])
    value = rng.choice(PALETTE)
    if where == "top":
        key = rng.choice([*KEYS, "accounts", "extra"])
        if rng.random() < 0.3:
            data.pop(key, None)
        else:
            data[key] = value if rng.random() < 0.5 else {}
        return
    accounts = data.get("accounts")
    if where in ("account", "backend") and isinstance(accounts, list) and accounts:
        account = rng.choice(accounts)
        if not isinstance(account, dict):
            return
        if where == "account":
            target, keys = account, ACCOUNT_KEYS
        else:
            tables = account.get("backends")
            if not isinstance(tables, list) or not tables or not isinstance(tables[0], dict):
                return
            target, keys = rng.choice(tables), BACKEND_KEYS
    else:
        name = rng.choice(list(KEYS))
        target = data.setdefault(name, {})
        if not isinstance(target, dict):
            return
        keys = KEYS[name]
    key = rng.choice(keys)
    if rng.random() < 0.2:
        target.pop(key, None)
    else:
        target[key] = value


def _variants(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    bases = [tomllib.loads(doc) for doc in _documents()]
    out = []
    for _ in range(count):
        data = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.choice([1, 1, 2, 3])):
            _mutate(data, rng)
        out.append(data)
    return out


@pytest.mark.parametrize("doc", _documents(), ids=lambda d: d.strip()[:30] or "empty")
def test_the_loaders_agree_on_every_realistic_config(doc: str) -> None:
    _agree(tomllib.loads(doc))


def test_the_common_configs_take_the_fast_way() -> None:
    for doc in (
        LAMBDA, SINGLE, EVERY_KEY.replace('keep = "x"\n', ""), MINIMAL, "", LAMBDA_AWS,
        EVERY_AWS_KEY, *VAULT_DOCS,
    ):
        assert _agree(tomllib.loads(doc)) == "config", doc


SWEPT = {
    "lambda": LAMBDA,
    "every key": EVERY_KEY.replace('keep = "x"\n', ""),
    "lambda aws": LAMBDA_AWS,
    "every aws key": EVERY_AWS_KEY,
    "vault": VAULT_DOCS[0],
    "every vault key": EVERY_VAULT_KEY,
}


@pytest.mark.parametrize("base", list(SWEPT))
def test_the_loaders_agree_when_any_one_key_takes_any_value(base: str) -> None:
    """Every key of every table (and of an account and its backend) set to every value."""
    data = tomllib.loads(SWEPT[base])
    places: list[tuple[str, list[str]]] = [(name, keys) for name, keys in KEYS.items()]
    places += [("account", ACCOUNT_KEYS), ("backend", BACKEND_KEYS)]
    kinds: dict[str, int] = {}
    for place, keys in places:
        for key in keys:
            for value in [*PALETTE, _ABSENT]:
                variant = copy.deepcopy(data)
                if place == "account":
                    target = variant["accounts"][0]
                elif place == "backend":
                    target = variant["accounts"][0]["backends"][0]
                else:
                    target = variant.setdefault(place, {})
                target.pop(key, None) if value is _ABSENT else target.__setitem__(key, value)
                kind = _agree(variant)
                kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds.get("config", 0) > 200 and kinds.get("error", 0) > 10, kinds


_ABSENT = object()


@pytest.mark.parametrize("seed", range(3))
def test_the_loaders_agree_on_mutated_configs(seed: int) -> None:
    kinds: dict[str, int] = {}
    for data in _variants(1500, seed):
        kind = _agree(data)
        kinds[kind] = kinds.get(kind, 0) + 1
    # The mutations reach both sides: files the fast loader accepts and files it declines.
    assert kinds.get("config", 0) > 100 and kinds.get("declined", 0) > 100, kinds


@pytest.mark.parametrize(
    "name",
    ["MotherDuckSettings", "StateSettings", "AuditSettings", "NotificationTarget",
     "Notifications", "CheckSpec", "Policy", "HookSpec", "Hooks"],
)
def test_each_plain_type_has_its_models_fields_and_defaults(name: str) -> None:
    model, plain = getattr(schema, name), getattr(types, name)
    assert [f.name for f in dataclasses.fields(plain)] == list(model.model_fields)
    required = {
        "NotificationTarget": {"type": "webhook", "url": "https://h.example/"},
        "CheckSpec": {"type": "readback"},
        "HookSpec": {"command": ("true",)},
    }.get(name, {})
    converted = schema.to_plain(model(**required))
    assert converted == plain(**required)
    assert repr(converted) == repr(plain(**required))


def test_the_backend_model_and_the_contract_name_the_same_formats() -> None:
    from backends.base import ValueFormat
    from backends.models import BackendConfig

    assert get_args(BackendConfig.model_fields["format"].annotation) == get_args(ValueFormat)


CHILD = """
import json, sys
from pathlib import Path
from rotator.config import load_config
import rotator.aws_lambda, rotator.engine.workflow
config = load_config(Path(sys.argv[1]))
before = "pydantic" in sys.modules
backends = [type(b).__name__ for a in config.accounts for b in a.backends]
print(json.dumps({"before": before, "after": "pydantic" in sys.modules, "backends": backends}))
"""


def test_a_valid_common_config_loads_without_pydantic(tmp_path: Path) -> None:
    """Loading imports no pydantic; the file backends' models appear when first asked for."""
    path = tmp_path / "rotator.toml"
    path.write_text(LAMBDA)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == {
        "before": False, "after": True, "backends": ["FileConfig"] * 3,
    }


def test_a_file_with_a_mistake_gets_the_reference_loaders_message() -> None:
    doc = LAMBDA.replace('rotate_after = "30d"', 'rotate_after = "30 days"')
    assert fast.parse_tables(tomllib.loads(doc), base_dir=BASE_DIR, source="t") is None
    with pytest.raises(ConfigError, match=r"defaults\.rotate_after: '30 days' is not a duration"):
        slow.parse_tables(tomllib.loads(doc), base_dir=BASE_DIR, source="t")


def test_a_rule_across_tables_gives_the_same_problems_either_way() -> None:
    """The fast loader raises the shared rules' ConfigError itself, as the reference would."""
    doc = LAMBDA.replace('revoke_grace = "0s"', 'lease_ttl = "30s"\nttl = "1d"')
    assert _agree(tomllib.loads(doc)) == "error"
    with pytest.raises(ConfigError) as caught:
        fast.parse_tables(tomllib.loads(doc), base_dir=BASE_DIR, source="t")
    assert [p.split(":")[0] for p in caught.value.problems] == ["defaults.ttl", "defaults.lease_ttl"]


@pytest.mark.parametrize(
    "table",
    [
        {"type": "file", "path": "secrets/a.json"},
        {"type": "file", "path": "/abs/b.json", "format": "raw"},
        {"type": "file", "path": "~/c.json", "format": "json", "follow_symlinks": True},
        {"type": "file", "path": "d", "follow_symlinks": False},
    ],
)
def test_a_checked_file_table_builds_the_backend_its_model_builds(
    table: dict[str, Any], tmp_path: Path
) -> None:
    """The engine builds a fast-loaded account's file backend from the table, no model."""
    from backends.base import CheckedTable
    from backends.file import FileBackend, FileConfig

    def facts(backend: FileBackend) -> tuple[object, ...]:
        return (backend.label, backend.fmt, backend.follow_symlinks, backend.describe())

    from_table = FileBackend.from_config(CheckedTable(table), account="a", base_dir=tmp_path)
    from_model = FileBackend.from_config(FileConfig(**table), account="a", base_dir=tmp_path)
    assert facts(from_table) == facts(from_model)


def test_the_engine_builds_fast_loaded_file_backends_without_models(tmp_path: Path) -> None:
    from rotator.config import parse_config
    from rotator.engine.workflow import Engine

    config = parse_config(LAMBDA, base_dir=tmp_path)
    store = SimpleNamespace(fingerprint_key=lambda: b"k")
    engine = Engine(config, client=None, store=store)  # type: ignore[arg-type]
    built = engine._build_backends(config.accounts[0])
    assert [b.label for b in built] == [f"file:{tmp_path / 'secrets/svc_lambda_0.json'}"]
    assert not config.accounts[0].backends_built


def test_the_aws_table_keys_are_the_models_fields() -> None:
    from backends._aws_config import FIELDS, SecretsManagerSettings
    from backends.models.aws import SecretsManagerConfig

    assert set(SecretsManagerConfig.model_fields) == FIELDS
    plain = {f.name for f in dataclasses.fields(SecretsManagerSettings)}
    assert plain == FIELDS - {"type"}


@pytest.mark.parametrize(
    "table",
    [
        {"type": "aws-secrets-manager", "secret_id": "md/a", "region": "us-east-1"},
        {"type": "aws-secrets-manager", "secret_id": ARN},
        {"type": "aws-secrets-manager", "secret_id": ARN, "region": "eu-west-1", "format": "raw"},
        {
            "type": "aws-secrets-manager", "secret_id": "md/b", "region": "eu-west-1",
            "endpoint_url": "http://127.0.0.1:5000", "kms_key_id": "alias/k",
            "create_if_missing": True, "tags": {"team": "data"}, "profile": "ops",
            "format": "json",
        },
    ],
)
def test_a_checked_aws_table_builds_the_backend_its_model_builds(
    table: dict[str, Any], tmp_path: Path
) -> None:
    """The engine builds a fast-loaded account's secret backend from the table, no model."""
    from backends.aws_secrets_manager import SecretsManagerBackend, SecretsManagerConfig
    from backends.base import CheckedTable

    assert fast._backend_table(copy.deepcopy(table)) == table  # the fast loader accepts it
    from_table = SecretsManagerBackend.from_config(
        CheckedTable(table), account="a", base_dir=tmp_path
    )
    from_model = SecretsManagerBackend.from_config(
        SecretsManagerConfig(**table), account="a", base_dir=tmp_path
    )
    assert vars(from_table) == vars(from_model)
    assert repr(vars(from_table)) == repr(vars(from_model))
    assert from_table.label == from_model.label


def test_a_valid_aws_config_loads_without_pydantic(tmp_path: Path) -> None:
    """A Lambda deployment's config (secret backends) loads without pydantic too."""
    path = tmp_path / "rotator.toml"
    path.write_text(LAMBDA_AWS)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == {
        "before": False, "after": True, "backends": ["SecretsManagerConfig"] * 3,
    }


def test_the_engine_builds_fast_loaded_aws_backends_without_models(tmp_path: Path) -> None:
    from rotator.config import parse_config
    from rotator.engine.workflow import Engine

    config = parse_config(EVERY_AWS_KEY, base_dir=tmp_path)
    store = SimpleNamespace(fingerprint_key=lambda: b"k")
    engine = Engine(config, client=None, store=store)  # type: ignore[arg-type]
    built = engine._build_backends(config.accounts[0])
    assert [b.label for b in built] == [
        "aws-secrets-manager:eu-west-1:md/every",
        f"aws-secrets-manager:eu-west-1:{ARN}",
        f"file:{tmp_path / 'local.json'}",
    ]
    assert not config.accounts[0].backends_built


@pytest.mark.parametrize("doc", [LAMBDA, LAMBDA_AWS, *VAULT_DOCS])
def test_a_type_that_is_not_the_built_in_backend_is_left_to_the_reference_loader(
    doc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin installed under a built-in name has its own model: the fast loader declines."""
    import backends

    class Plugin:
        pass

    monkeypatch.setattr(backends, "load_factory", lambda name: Plugin)
    assert fast.parse_tables(tomllib.loads(doc), base_dir=BASE_DIR, source="t") is None


def test_the_vault_table_keys_are_the_models_fields() -> None:
    from backends import _vault_auth
    from backends.models import vault

    assert set(vault.VaultConfig.model_fields) == _vault_auth.FIELDS
    plain = {f.name for f in dataclasses.fields(_vault_auth.VaultSettings)}
    assert plain == _vault_auth.FIELDS - {"type"}
    models = {"token": vault.TokenAuth, "approle": vault.AppRoleAuth,
              "kubernetes": vault.KubernetesAuth, "aws": vault.AwsAuth}
    assert {m: set(c.model_fields) for m, c in models.items()} == _vault_auth.AUTH_FIELDS
    assert vault.K8S_JWT_PATH == _vault_auth.K8S_JWT_PATH
    for method, model in models.items():  # the same defaults, field by field
        required = {"role": "r"} if "role" in model.model_fields else {}
        required |= {"role_id": "r"} if method == "approle" else {}
        assert _vault_auth.auth_settings(model(method=method, **required)) == (
            _vault_auth.auth_settings({"method": method, **required})
        )


@pytest.mark.parametrize(
    "table",
    [
        {"type": "vault", "url": "https://v.example:8200", "path": "md/a"},
        {"type": "vault", "url": "http://127.0.0.1:8200", "path": "md/b", "timeout": 3,
         "auth": {"method": "approle", "role_id": "r"}},
        {"type": "vault", "url": "http://v.example", "path": "b", "mount": "kv", "verify": False,
         "insecure": True, "namespace": "n", "field": "f", "ca_cert": "ca.pem", "format": "raw",
         "timeout": 2.5, "auth": {"method": "kubernetes", "role": "r", "jwt_path": "jwt"}},
        {"type": "vault", "url": "https://v.example", "path": "c",
         "auth": {"method": "aws", "role": "r", "region": "eu-west-1", "server_id": "s"}},
        {"type": "vault", "url": "https://v.example", "path": "d", "auth": {"token_env": "T"}},
    ],
)
def test_a_checked_vault_table_builds_the_backend_its_model_builds(
    table: dict[str, Any], tmp_path: Path
) -> None:
    from backends.base import CheckedTable
    from backends.vault import VaultBackend, VaultConfig

    assert fast._backend_table(copy.deepcopy(table)) == table  # the fast loader accepts it
    from_table = VaultBackend.from_config(CheckedTable(table), account="a", base_dir=tmp_path)
    from_model = VaultBackend.from_config(VaultConfig(**table), account="a", base_dir=tmp_path)
    assert from_table.config == from_model.config
    assert repr(from_table.config) == repr(from_model.config)
    assert vars(from_table.kv) == vars(from_model.kv)
    assert from_table.label == from_model.label


def test_a_valid_vault_config_loads_without_pydantic(tmp_path: Path) -> None:
    path = tmp_path / "rotator.toml"
    path.write_text(EVERY_VAULT_KEY)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == {
        "before": False, "after": True, "backends": ["VaultConfig"] * 4,
    }
