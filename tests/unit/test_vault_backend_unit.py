"""The `vault` backend's config models and login selection, with fake hvac clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest
from pydantic import ValidationError

from backends._vault_auth import (
    AppRoleAuth,
    AwsAuth,
    KubernetesAuth,
    LoginProblem,
    TokenAuth,
    VaultConfig,
    login,
)
from backends.vault import VaultBackend
from rotator.errors import BackendError


class Recorder:
    """Records every call made through any attribute chain, e.g. `auth.kubernetes.login`."""

    def __init__(self, calls: list[tuple[str, dict[str, Any]]], name: str = "") -> None:
        self._calls = calls
        self._name = name

    def __getattr__(self, attr: str) -> Recorder:
        return Recorder(self._calls, f"{self._name}.{attr}".lstrip("."))

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._calls.append((self._name, {"args": args, **kwargs}))
        return {}


class FakeClient:
    """Stands in for hvac.Client: records logins, answers the mount lookup and KV reads."""

    def __init__(self, mount_version: str = "2", **kwargs: Any) -> None:
        self.init_kwargs = kwargs
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.token: str | None = None
        self.auth = Recorder(self.calls, "auth")
        self.adapter = self
        self.secrets = self
        self.kv = self
        self.v2 = self
        self.mount_version = mount_version

    def get(self, url: str) -> dict[str, Any]:
        self.calls.append(("adapter.get", {"url": url}))
        return {"data": {"type": "kv", "options": {"version": self.mount_version}}}

    def read_secret_version(self, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("read_secret_version", {"path": path, **kwargs}))
        raise hvac.exceptions.InvalidPath(errors=[])


def config(**fields: Any) -> VaultConfig:
    return VaultConfig.model_validate(
        {"type": "vault", "url": "https://vault.example:8200", "path": "app/md", **fields}
    )


class TestVaultConfig:
    def test_defaults(self) -> None:
        """Mount `secret`, field `motherduck_token`, json, TLS verified, token auth from VAULT_TOKEN."""
        cfg = config()
        assert (cfg.mount, cfg.field, cfg.format, cfg.verify) == (
            "secret",
            "motherduck_token",
            "json",
            True,
        )
        assert cfg.auth == TokenAuth(token_env="VAULT_TOKEN")

    def test_auth_without_method_is_token(self) -> None:
        """An auth table without `method` means token auth."""
        assert config(auth={"token_env": "MY_TOKEN"}).auth == TokenAuth(token_env="MY_TOKEN")

    @pytest.mark.parametrize(
        ("auth", "model"),
        [
            ({"method": "approle", "role_id": "r"}, AppRoleAuth),
            ({"method": "kubernetes", "role": "rotator"}, KubernetesAuth),
            ({"method": "aws", "role": "rotator", "region": "eu-west-1"}, AwsAuth),
        ],
    )
    def test_method_picks_the_model(self, auth: dict[str, str], model: type[Any]) -> None:
        """The `method` tag selects the auth model."""
        assert isinstance(config(auth=auth).auth, model)

    @pytest.mark.parametrize(
        ("fields", "where"),
        [
            ({"auth": {"method": "ldap"}}, "auth"),
            ({"auth": {"method": "kubernetes", "role": "r", "rolee": "x"}}, "rolee"),
            ({"auth": {"method": "approle"}}, "exactly one of role_id or role_id_env"),
            ({"auth": {"method": "approle", "role_id": "a", "role_id_env": "B"}}, "exactly one"),
            ({"url": "vault.example"}, "http"),
            ({"mount": "/"}, "mount"),
            ({"verfy": False}, "verfy"),
        ],
    )
    def test_bad_config_is_refused(self, fields: dict[str, Any], where: str) -> None:
        """Unknown methods, unknown fields and bad values fail validation naming the field."""
        with pytest.raises(ValidationError, match=where):
            config(**fields)

    def test_slashes_are_trimmed(self) -> None:
        """`/secret/` and `/app/md/` mean `secret` and `app/md`; the label shows them."""
        vb = VaultBackend(config(mount="/secret/", path="/app/md/"))
        assert vb.label == "vault:secret/app/md"


class TestLogin:
    def test_token_from_env(self) -> None:
        """Token auth puts the env var's token on the client and calls no login endpoint."""
        client = FakeClient()
        login(client, TokenAuth(token_env="T"), base_dir=Path("."), env={"T": "s.abc"})
        assert client.token == "s.abc" and client.calls == []

    def test_token_env_missing(self) -> None:
        """A missing token variable is a LoginProblem naming the variable."""
        with pytest.raises(LoginProblem, match="VAULT_TOKEN"):
            login(FakeClient(), TokenAuth(), base_dir=Path("."), env={})

    def test_approle(self) -> None:
        """AppRole logs in at its mount with the role id and the secret id from the env."""
        client = FakeClient()
        auth = AppRoleAuth(method="approle", role_id_env="R", secret_id_env="S", mount="ar")
        login(client, auth, base_dir=Path("."), env={"R": "role", "S": "sid"})
        assert client.calls == [
            (
                "auth.approle.login",
                {"args": (), "role_id": "role", "secret_id": "sid", "mount_point": "ar"},
            )
        ]

    def test_kubernetes(self, tmp_path: Path) -> None:
        """Kubernetes auth reads the JWT (relative to the config dir) and logs in with the role."""
        (tmp_path / "jwt").write_text("eyJ.jwt.sig\n")
        client = FakeClient()
        auth = KubernetesAuth(method="kubernetes", role="rotator", jwt_path="jwt")
        login(client, auth, base_dir=tmp_path, env={})
        assert client.calls == [
            (
                "auth.kubernetes.login",
                {"args": (), "role": "rotator", "jwt": "eyJ.jwt.sig", "mount_point": "kubernetes"},
            )
        ]

    def test_kubernetes_jwt_missing(self, tmp_path: Path) -> None:
        """A missing service-account JWT is a LoginProblem naming the file."""
        auth = KubernetesAuth(method="kubernetes", role="r", jwt_path=str(tmp_path / "nope"))
        with pytest.raises(LoginProblem, match="nope"):
            login(FakeClient(), auth, base_dir=tmp_path, env={})

    def test_aws_uses_the_boto3_credential_chain(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """AWS auth signs an IAM login with boto3's credentials, the role, region and mount."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secretkey")
        monkeypatch.setenv("AWS_SESSION_TOKEN", "sessiontoken")
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        client = FakeClient()
        auth = AwsAuth(method="aws", role="rotator", region="eu-west-1", server_id="vault.example")
        login(client, auth, base_dir=Path("."), env={})
        ((name, call),) = client.calls
        assert name == "auth.aws.iam_login"
        assert call["args"] == ("AKIDEXAMPLE", "secretkey", "sessiontoken")
        assert call["role"] == "rotator" and call["region"] == "eu-west-1"
        assert call["mount_point"] == "aws" and call["header_value"] == "vault.example"


class TestBackendClient:
    def test_client_is_built_and_logged_in_lazily(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Building the backend makes no call; the first read logs in, checks the mount, reads."""
        made: list[FakeClient] = []

        def factory(**kwargs: Any) -> FakeClient:
            made.append(FakeClient(**kwargs))
            return made[-1]

        monkeypatch.setattr(hvac, "Client", factory)
        (tmp_path / "jwt").write_text("jwt")
        (tmp_path / "ca.pem").write_text("ca")
        cfg = config(
            auth={"method": "kubernetes", "role": "r", "jwt_path": "jwt"},
            ca_cert="ca.pem",
            namespace="team",
        )
        vb = VaultBackend.from_config(cfg, account="svc", base_dir=tmp_path)
        assert made == []
        assert vb.read_current() is None
        (client,) = made
        assert client.init_kwargs["verify"] == str(tmp_path / "ca.pem")
        assert client.init_kwargs["namespace"] == "team"
        assert [name for name, _ in client.calls] == [
            "auth.kubernetes.login",
            "adapter.get",
            "read_secret_version",
        ]
        assert client.calls[1][1]["url"] == "/v1/sys/internal/ui/mounts/secret"

    def test_kv_v1_is_refused(self) -> None:
        """A KV v1 mount is refused with a message that says how to fix it."""
        vb = VaultBackend(config(), client=FakeClient(mount_version="1"))
        with pytest.raises(BackendError, match="enable-versioning"):
            vb.read_current()

    def test_describe_has_no_secrets(self) -> None:
        """describe() names type, url, mount, path, field, format and auth method only."""
        facts = VaultBackend(config(auth={"method": "approle", "role_id": "rid"})).describe()
        assert facts["auth"] == "approle" and "rid" not in facts.values()
        assert facts["url"] == "https://vault.example:8200" and facts["path"] == "app/md"
