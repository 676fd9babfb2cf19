"""The `vault` backend's plain settings and its login to Vault/OpenBao, without pydantic.

A `[[accounts.backends]] type = "vault"` table is validated by the pydantic models in
backends/models/vault.py, or, when the pydantic-free config loader (rotator/config/fast.py)
proved it valid, by nothing more: the backend reads the `VaultSettings` below from either
(`of` a model, `from_table` a checked table), so a start that rotates nothing imports no
pydantic. The auth dataclasses mirror the auth models field for field (a unit test holds
them equal). Secrets (tokens, secret ids, JWTs, AWS keys) are read from the environment or
files at login time and never kept here. hvac and boto3 are imported lazily.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from backends.base import JSON_TOKEN_FIELD, ValueFormat

__all__ = [  # and, on first use, the pydantic models of backends/models/vault.py
    "AUTH_FIELDS", "FIELDS", "K8S_JWT_PATH", "LoginProblem", "VaultAuthSettings",
    "VaultSettings", "login",
]

K8S_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
FIELDS: Final = frozenset(
    {"type", "format", "url", "mount", "path", "namespace", "field", "ca_cert", "verify",
     "insecure", "timeout", "auth"}
)


class LoginProblem(Exception):
    """Login cannot even be attempted (missing env var, unreadable JWT, no AWS credentials)."""


@dataclass(frozen=True, slots=True)
class TokenAuthSettings:
    method: str = "token"
    token_env: str = "VAULT_TOKEN"


@dataclass(frozen=True, slots=True)
class AppRoleAuthSettings:
    method: str = "approle"
    role_id: str | None = None
    role_id_env: str | None = None
    secret_id_env: str = "VAULT_SECRET_ID"
    mount: str = "approle"


@dataclass(frozen=True, slots=True)
class KubernetesAuthSettings:
    role: str
    method: str = "kubernetes"
    jwt_path: str = K8S_JWT_PATH
    mount: str = "kubernetes"


@dataclass(frozen=True, slots=True)
class AwsAuthSettings:
    role: str
    method: str = "aws"
    mount: str = "aws"
    region: str | None = None
    server_id: str | None = None


VaultAuthSettings = (
    TokenAuthSettings | AppRoleAuthSettings | KubernetesAuthSettings | AwsAuthSettings
)
_AUTH: Final[dict[str, type[VaultAuthSettings]]] = {
    "token": TokenAuthSettings,
    "approle": AppRoleAuthSettings,
    "kubernetes": KubernetesAuthSettings,
    "aws": AwsAuthSettings,
}
# Each method's keys (its model's fields).
AUTH_FIELDS: Final = {m: frozenset(f.name for f in fields(c)) for m, c in _AUTH.items()}


def auth_settings(auth: Any) -> VaultAuthSettings:
    """From an auth model, a checked auth table, or an auth settings object."""
    if isinstance(auth, Mapping):
        values = dict(auth)
        kind = _AUTH[values.setdefault("method", "token")]
    else:
        kind = _AUTH[auth.method]
        values = {f.name: getattr(auth, f.name) for f in fields(kind)}
    return kind(**values)


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """What the backend reads of its config: a validated model's fields, or a checked table's."""

    url: str
    path: str
    mount: str = "secret"
    namespace: str | None = None
    field: str = JSON_TOKEN_FIELD
    ca_cert: str | None = None
    verify: bool = True
    insecure: bool = False
    timeout: float = 10.0
    auth: VaultAuthSettings = dataclasses.field(default_factory=TokenAuthSettings)
    format: ValueFormat = "json"

    @classmethod
    def of(cls, config: Any) -> VaultSettings:
        """From a `VaultConfig` (or anything with its attributes)."""
        names = [f.name for f in fields(cls) if f.name != "auth"]
        return cls(**{n: getattr(config, n) for n in names}, auth=auth_settings(config.auth))

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> VaultSettings:
        """From a table the fast loader proved valid (every value already as the model keeps
        it, but `timeout`, which the model makes a float)."""
        values: dict[str, Any] = {k: v for k, v in table.items() if k != "type"}
        if "timeout" in values:
            values["timeout"] = float(values["timeout"])
        if "auth" in values:
            values["auth"] = auth_settings(values["auth"])
        return cls(**values)


def _env(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name)
    if not value:
        raise LoginProblem(f"environment variable {name} ({what}) is not set")
    return value


def login(
    client: Any, auth: Any, *, base_dir: Path, env: Mapping[str, str] | None = None
) -> None:
    """Authenticate `client` (an hvac.Client) as `auth` (a model or settings) says.

    Raises LoginProblem when a credential is missing locally; hvac/requests exceptions from
    the login call itself propagate for the backend's error mapper.
    """
    env = os.environ if env is None else env
    method = auth.method
    if method == "token":
        client.token = _env(env, auth.token_env, "the Vault token")
    elif method == "approle":
        role_id = auth.role_id or _env(env, auth.role_id_env or "", "the AppRole role id")
        secret_id = _env(env, auth.secret_id_env, "the AppRole secret id")
        client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=auth.mount)
    elif method == "kubernetes":
        jwt_path = Path(auth.jwt_path).expanduser()
        jwt_path = jwt_path if jwt_path.is_absolute() else base_dir / jwt_path
        try:
            jwt = jwt_path.read_text().strip()
        except OSError as exc:
            raise LoginProblem(
                f"cannot read the service-account JWT at {jwt_path} ({exc.strerror})"
            ) from exc
        client.auth.kubernetes.login(role=auth.role, jwt=jwt, mount_point=auth.mount)
    elif method == "aws":
        _aws_login(client, auth)
    else:  # pragma: no cover - the models and the settings admit nothing else
        raise RuntimeError(f"unknown auth method {method!r}")


def _aws_login(client: Any, auth: Any) -> None:
    import boto3

    session = boto3.Session(region_name=auth.region) if auth.region else boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise LoginProblem("no AWS credentials found (environment, profile, or instance/task role)")
    frozen = credentials.get_frozen_credentials()
    client.auth.aws.iam_login(
        frozen.access_key,
        frozen.secret_key,
        frozen.token,
        header_value=auth.server_id,
        role=auth.role,
        region=auth.region or session.region_name or "us-east-1",
        mount_point=auth.mount,
    )


_MODELS = frozenset({"AppRoleAuth", "AwsAuth", "KubernetesAuth", "TokenAuth", "VaultConfig"})


def __getattr__(name: str) -> Any:
    """The auth and config models (pydantic) are imported on first use, not with this module."""
    if name in _MODELS:
        from backends.models import vault

        return getattr(vault, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
