"""The resolved config the rest of the tool reads: Config and one AccountConfig per account.

Built by `parse_config` once every table has validated and `[defaults]` is merged into
each account's overrides (AccountConfig.policy). Frozen: nothing changes it after load.
Config also answers the questions asked of the whole file: an account by name, where
state and the audit trail live, which environment variables and values are secrets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rotator.config.types import (
    AuditSettings,
    MotherDuckSettings,
    Notifications,
    Policy,
    StateSettings,
)
from rotator.errors import ConfigError

if TYPE_CHECKING:
    from backends import BackendConfig
    from backends.base import CheckedTable

_MATERIALIZE = threading.Lock()


class AccountConfig:
    """One account: its username, its merged policy and its backends' validated configs.

    `backends` are the backend models (pydantic, each backend's own `Config`). The fast
    loader (rotator/config/fast.py) has already proved each table valid without pydantic
    and passes the tables instead (built-in `file`, `aws-secrets-manager` and `vault`
    tables only): they become models on first use of `backends`. The engine builds backends
    from `backend_inputs`, which gives those checked tables as they are, so neither a
    pass with nothing due nor a rotation of such an account imports pydantic.
    """

    __slots__ = ("_backends", "_tables", "policy", "username")

    def __init__(
        self,
        *,
        username: str,
        policy: Policy,
        backends: tuple[BackendConfig, ...] | None = None,
        tables: tuple[CheckedTable, ...] | None = None,
    ) -> None:
        if (backends is None) == (tables is None):
            raise TypeError("AccountConfig needs either backends or (checked) tables")
        self.username = username
        self.policy = policy
        self._backends = backends
        self._tables = tables

    @property
    def name(self) -> str:
        return self.username

    @property
    def backends(self) -> tuple[BackendConfig, ...]:
        if self._backends is None:
            with _MATERIALIZE:  # a fleet's threads may ask at once; validate once
                if self._backends is None:
                    from backends import validate_config

                    assert self._tables is not None
                    self._backends = tuple(validate_config(dict(t)) for t in self._tables)
        return self._backends

    @property
    def backend_inputs(self) -> tuple[BackendConfig | CheckedTable, ...]:
        """What the engine builds each backend from: the models once anything asked for
        them, else the fast loader's checked built-in tables (built without pydantic)."""
        if self._backends is not None:
            return self._backends
        assert self._tables is not None
        return self._tables

    @property
    def backends_built(self) -> bool:
        """False while the backends are still the fast loader's checked tables."""
        return self._backends is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccountConfig):
            return NotImplemented
        mine = (self.username, self.policy, self.backends)
        return mine == (other.username, other.policy, other.backends)

    __hash__ = None  # type: ignore[assignment]  # equal accounts may hold unhashable tables

    def __repr__(self) -> str:
        shown = self._backends if self._backends is not None else self._tables
        return (
            f"AccountConfig(username={self.username!r}, backends={shown!r}, "
            f"policy={self.policy!r})"
        )

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("username", "policy") and hasattr(self, name):
            raise AttributeError(f"AccountConfig is frozen: cannot set {name!r}")
        object.__setattr__(self, name, value)


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
            if not account.backends_built:
                continue  # only built-in `file` tables are left unbuilt: they name no credential
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
