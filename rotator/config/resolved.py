"""The resolved config the rest of the tool reads: Config and one AccountConfig per account.

Built by `parse_config` once every table has validated and `[defaults]` is merged into
each account's overrides (AccountConfig.policy). Frozen: nothing changes it after load.
Config also answers the questions asked of the whole file: an account by name, where
state and the audit trail live, which environment variables and values are secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backends import BackendConfig
from rotator.config.schema import (
    AuditSettings,
    MotherDuckSettings,
    Notifications,
    Policy,
    StateSettings,
    Strict,
)
from rotator.errors import ConfigError


class AccountConfig(Strict):
    username: str
    backends: tuple[BackendConfig, ...]
    policy: Policy

    @property
    def name(self) -> str:
        return self.username


@dataclass(frozen=True, slots=True)
class Config:
    motherduck: MotherDuckSettings
    state: StateSettings
    defaults: Policy
    accounts: tuple[AccountConfig, ...]
    base_dir: Path
    source: str
    audit: AuditSettings = field(default_factory=AuditSettings)
    notifications: Notifications = field(default_factory=Notifications)

    def account(self, username: str) -> AccountConfig:
        for account in self.accounts:
            if account.username.lower() == username.lower():
                return account
        known = ", ".join(a.username for a in self.accounts) or "none"
        raise ConfigError(f"account {username!r} is not in {self.source} (configured: {known})")

    @property
    def state_path(self) -> Path:
        path = Path(self.state.path)
        return path if path.is_absolute() else self.base_dir / path

    @property
    def audit_path(self) -> Path | None:
        """The audit file, or None when events go to the log (DynamoDB store, no path)."""
        if self.audit.path:
            path = Path(self.audit.path)
            return path if path.is_absolute() else self.base_dir / path
        return self.state_path / "audit.jsonl" if self.state.store == "file" else None

    def credential_env_names(self) -> set[str]:
        """Environment variables this config reads credentials from (for the redactor)."""
        names = {self.motherduck.admin_token_env}
        for account in self.accounts:
            for backend in account.backends:
                auth = getattr(backend, "auth", None)
                for attr in ("token_env", "secret_id_env", "role_id_env"):
                    name = getattr(auth, attr, None)
                    if isinstance(name, str) and name:
                        names.add(name)
        return names

    def secret_values(self) -> list[str]:
        """Values in the config itself that are secrets: the notification URLs."""
        notes = self.notifications
        return [target.url for target in (*notes.on_success, *notes.on_failure)]
