"""The `vault` backend's configuration models and its login to Vault/OpenBao.

`auth` is a tagged table whose `method` picks the model (token when omitted):

    auth = {method = "token", token_env = "VAULT_TOKEN"}
    auth = {method = "approle", role_id_env = "VAULT_ROLE_ID", secret_id_env = "VAULT_SECRET_ID"}
    auth = {method = "kubernetes", role = "rotator"}
    auth = {method = "aws", role = "rotator", region = "eu-west-1"}

Secrets (tokens, secret ids, JWTs, AWS keys) are read from the environment or files at
login time and never kept in the config models. hvac and boto3 are imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from backends.base import JSON_TOKEN_FIELD, BackendConfig
from rotator.netpolicy import check_aws_region, insecure_reason

__all__ = [
    "AppRoleAuth",
    "AwsAuth",
    "KubernetesAuth",
    "LoginProblem",
    "TokenAuth",
    "VaultConfig",
    "login",
]

K8S_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class LoginProblem(Exception):
    """Login cannot even be attempted (missing env var, unreadable JWT, no AWS credentials)."""


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenAuth(_Auth):
    """A Vault token taken from an environment variable (Vault Agent, CI, a person)."""

    method: Literal["token"] = "token"
    token_env: str = "VAULT_TOKEN"


class AppRoleAuth(_Auth):
    """AppRole login: role id inline or from the environment, secret id from the environment."""

    method: Literal["approle"]
    role_id: str | None = None
    role_id_env: str | None = None
    secret_id_env: str = "VAULT_SECRET_ID"
    mount: str = "approle"

    @model_validator(mode="after")
    def _one_role_id(self) -> AppRoleAuth:
        if (self.role_id is None) == (self.role_id_env is None):
            raise ValueError("give exactly one of role_id or role_id_env")
        return self


class KubernetesAuth(_Auth):
    """Kubernetes login with the pod's service-account JWT."""

    method: Literal["kubernetes"]
    role: str
    jwt_path: str = K8S_JWT_PATH
    mount: str = "kubernetes"


class AwsAuth(_Auth):
    """AWS IAM login signed with boto3's default credential chain."""

    method: Literal["aws"]
    role: str
    mount: str = "aws"
    region: str | None = None
    server_id: str | None = None  # the X-Vault-AWS-IAM-Server-ID header, if the mount wants one

    _region = field_validator("region")(check_aws_region)


def _auth_method(value: Any) -> str | None:
    if isinstance(value, Mapping):
        method = value.get("method", "token")
        return method if isinstance(method, str) else None
    return getattr(value, "method", None)


VaultAuth = Annotated[
    Annotated[TokenAuth, Tag("token")]
    | Annotated[AppRoleAuth, Tag("approle")]
    | Annotated[KubernetesAuth, Tag("kubernetes")]
    | Annotated[AwsAuth, Tag("aws")],
    Discriminator(_auth_method),
]


class VaultConfig(BackendConfig):
    """`[[accounts.backends]]` with `type = "vault"`: one KV v2 secret."""

    url: str
    mount: str = "secret"
    path: str
    namespace: str | None = None
    field: str = JSON_TOKEN_FIELD
    ca_cert: str | None = None
    verify: bool = True
    # Plain http or verify = false toward anything but loopback exposes the Vault token
    # and the secret: refused unless this says so (and then warned about on every run).
    insecure: bool = False
    timeout: float = Field(default=10.0, gt=0)
    auth: VaultAuth = Field(default_factory=TokenAuth)

    @model_validator(mode="after")
    def _tls_or_insecure(self) -> VaultConfig:
        why = insecure_reason(self.url, verify=self.verify)
        if why and not self.insecure:
            raise ValueError(f"url: {why}; use https with verify, or set insecure = true")
        return self

    @field_validator("mount", "path")
    @classmethod
    def _no_outer_slashes(cls, value: str) -> str:
        value = value.strip("/")
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def _env(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name)
    if not value:
        raise LoginProblem(f"environment variable {name} ({what}) is not set")
    return value


def login(
    client: Any, auth: _Auth, *, base_dir: Path, env: Mapping[str, str] | None = None
) -> None:
    """Authenticate `client` (an hvac.Client) as `auth` says; the token stays on the client.

    Raises LoginProblem when a credential is missing locally; hvac/requests exceptions from
    the login call itself propagate for the backend's error mapper.
    """
    env = os.environ if env is None else env
    if isinstance(auth, TokenAuth):
        client.token = _env(env, auth.token_env, "the Vault token")
    elif isinstance(auth, AppRoleAuth):
        role_id = auth.role_id or _env(env, auth.role_id_env or "", "the AppRole role id")
        secret_id = _env(env, auth.secret_id_env, "the AppRole secret id")
        client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=auth.mount)
    elif isinstance(auth, KubernetesAuth):
        jwt_path = Path(auth.jwt_path).expanduser()
        jwt_path = jwt_path if jwt_path.is_absolute() else base_dir / jwt_path
        try:
            jwt = jwt_path.read_text().strip()
        except OSError as exc:
            raise LoginProblem(
                f"cannot read the service-account JWT at {jwt_path} ({exc.strerror})"
            ) from exc
        client.auth.kubernetes.login(role=auth.role, jwt=jwt, mount_point=auth.mount)
    elif isinstance(auth, AwsAuth):
        _aws_login(client, auth)
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise RuntimeError(f"unknown auth model {type(auth).__name__}")


def _aws_login(client: Any, auth: AwsAuth) -> None:
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
