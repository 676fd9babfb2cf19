"""The `vault` backend's configuration models (pydantic; login is in backends/_vault_auth.py).

`auth` is a tagged table whose `method` picks the model (token when omitted):

    auth = {method = "token", token_env = "VAULT_TOKEN"}
    auth = {method = "approle", role_id_env = "VAULT_ROLE_ID", secret_id_env = "VAULT_SECRET_ID"}
    auth = {method = "kubernetes", role = "rotator"}
    auth = {method = "aws", role = "rotator", region = "eu-west-1"}

Secrets (tokens, secret ids, JWTs, AWS keys) are read from the environment or files at
login time and never kept in the config models. The backend itself reads the plain
`VaultSettings` (backends/_vault_auth.py) made from these, or from a table the
pydantic-free config loader checked, so loading it imports no pydantic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

from backends.base import JSON_TOKEN_FIELD, env_name, optional, printable, slash_path
from backends.models import BackendConfig
from rotator.netpolicy import check_aws_region, http_base_url, insecure_reason

__all__ = ["K8S_JWT_PATH", "AppRoleAuth", "AwsAuth", "KubernetesAuth", "TokenAuth", "VaultConfig"]

# The same default as backends/_vault_auth.py's (a unit test holds them equal): this module
# imports nothing from it, so that one can hand these models out on demand.
K8S_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"

class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _stripped(check: Callable[[str], str]) -> Callable[[str], str]:
    """`check` the value without its outer slashes; the value is kept as written."""

    def checked(value: str) -> str:
        check(value.strip("/"))
        return value

    return checked


class TokenAuth(_Auth):
    """A Vault token taken from an environment variable (Vault Agent, CI, a person)."""

    method: Literal["token"] = "token"
    token_env: str = "VAULT_TOKEN"

    _env = field_validator("token_env")(env_name)


class AppRoleAuth(_Auth):
    """AppRole login: role id inline or from the environment, secret id from the environment."""

    method: Literal["approle"]
    role_id: str | None = None
    role_id_env: str | None = None
    secret_id_env: str = "VAULT_SECRET_ID"
    mount: str = "approle"

    _env = field_validator("role_id_env", "secret_id_env")(optional(env_name))
    _text = field_validator("role_id")(optional(printable))
    _mount = field_validator("mount")(_stripped(slash_path))

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

    _text = field_validator("role", "jwt_path")(printable)
    _mount = field_validator("mount")(_stripped(slash_path))


class AwsAuth(_Auth):
    """AWS IAM login signed with boto3's default credential chain."""

    method: Literal["aws"]
    role: str
    mount: str = "aws"
    region: str | None = None
    server_id: str | None = None  # the X-Vault-AWS-IAM-Server-ID header, if the mount wants one

    _region = field_validator("region")(check_aws_region)
    _text = field_validator("role")(printable)
    _server = field_validator("server_id")(optional(printable))
    _mount = field_validator("mount")(_stripped(slash_path))


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
        return slash_path(value.strip("/"))

    _text = field_validator("field")(printable)
    _namespace = field_validator("namespace")(optional(printable))

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Vault's URL appears in `status`, logs and errors: no password may ride in it.
        return http_base_url(value, example="https://vault.example.com:8200")
