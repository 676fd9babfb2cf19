"""Run the real `rotator` command in a subprocess against the test servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.simulator_fixtures import unique_username


@dataclass
class CliSetup:
    """A config file, its state dir and the environment a `rotator` process needs."""

    root: Path
    api_url: str
    admin_token: str
    accounts: list[str]
    backend_tables: dict[str, list[str]] = field(default_factory=dict)
    policy: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    # Short, so a run resumed after a kill just before its create was sent waits seconds,
    # not the default minute; still longer than any delay a test injects into a create.
    create_settle: str = "5s"

    @property
    def config_path(self) -> Path:
        return self.root / "rotator.toml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def secret_file(self, username: str) -> Path:
        return self.root / "secrets" / f"{username}.json"

    def write(self) -> CliSetup:
        lines = [
            "[motherduck]",
            f'api_url = "{self.api_url}"',
            'admin_token_env = "TEST_MD_ADMIN"',
            f'create_settle = "{self.create_settle}"',
            "",
            "[state]",
            'path = "state"',
            "",
            "[defaults]",
            self.policy,
        ]
        for username in self.accounts:
            lines += ["", "[[accounts]]", f'username = "{username}"']
            tables = self.backend_tables.get(username) or [
                f'type = "file"\npath = "secrets/{username}.json"'
            ]
            for table in tables:
                lines += ["  [[accounts.backends]]", table]
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n")
        return self

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TEST_MD_ADMIN": self.admin_token,
            "ROTATOR_CONFIG": str(self.config_path),
            **self.extra_env,
            **extra,
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rotator.cli", "--log-format", "json", *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=env or self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
        )

    def runs(self) -> list[dict[str, Any]]:
        runs_dir = self.state_dir / "runs"
        if not runs_dir.exists():
            return []
        out = []
        for path in runs_dir.glob("*.json"):
            try:
                out.append(json.loads(path.read_text()))
            except ValueError:
                continue  # mid-replace is impossible (atomic), but a test may race a delete
        return out

    def account_doc(self, username: str) -> dict[str, Any] | None:
        path = self.state_dir / "accounts" / f"{username.lower()}.json"
        return json.loads(path.read_text()) if path.exists() else None


def adopted_fleet(
    sim: Any, tmp_path: Path, n: int, policy: str = ""
) -> tuple[CliSetup, list[str]]:
    """`n` adopted accounts, each with a file backend holding its current token."""
    users = [unique_username() for _ in range(n)]
    cli = CliSetup(tmp_path, sim.url, sim.admin_token, users, policy=policy).write()
    for user in users:
        secret, token_id = sim.seed(user, token_name="initial")
        seed_file(cli.secret_file(user), secret, token_id)
        done = cli.run("adopt", user, "--token-id", token_id)
        assert done.returncode == 0, done.stderr
    return cli, users


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def seed_file(path: Path, token: str, token_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"motherduck_token": token, "token_id": token_id}))
    path.chmod(0o600)


def read_secret(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def scan_for_secrets(blobs: Sequence[str | bytes], secrets: Sequence[str]) -> list[str]:
    """Every secret that appears in any blob (empty list = clean)."""
    found = []
    for secret in secrets:
        for blob in blobs:
            text = blob.decode(errors="replace") if isinstance(blob, bytes) else blob
            if secret and secret in text:
                found.append(secret[:12] + "...")
                break
    return found
