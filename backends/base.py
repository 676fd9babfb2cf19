"""The secret-backend contract the rotation engine drives.

A backend stores one MotherDuck token for one account in one place (an AWS secret, a
Vault KV path, a file). The engine calls, in order:

    read_current()        what consumers get today (preflight, bootstrap, drift)
    stage(record, run_id) put the new token where a consumer *will* read it; may already
                          be visible (Vault) or pending (AWSPENDING, a `.pending` file)
    read_staged(run_id)   read the staged value back, for checks and for resume
    promote(receipt, ..)  make it what consumers read (AWS label move, file rename)
    rollback(receipt, ..) put the value from before `stage` back as current

Every verb is safe to repeat for the same `run_id` (a resumed run replays the step whose
outcome was not recorded). `stage` returns a `Receipt`: a small JSON-safe mapping with
version ids etc. (never the secret) that the engine checkpoints and hands back to
`promote`/`rollback`.

Third-party backends register a class under the `rotator.backends` entry-point group;
the class needs a `Config` pydantic model (a subclass of `BackendConfig`) and a
`from_config(config, *, account, base_dir)` classmethod returning an object satisfying
`Backend`; relative file paths in the config resolve against `base_dir` (the directory
of the config file).
A backend that keeps fingerprints may also have `use_fingerprint_key(source)`: the engine
calls it with a `KeySource` so fingerprints are keyed with the state store's secret key
(see `value_fingerprint`).
Heavy client libraries are imported inside methods, never at module import.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from rotator.secret import Secret

if TYPE_CHECKING:
    from backends.models import BackendConfig

__all__ = [
    "JSON_TOKEN_FIELD",
    "Backend",
    "BackendConfig",
    "BackendFactory",
    "CheckedTable",
    "KeySource",
    "ModelOnDemand",
    "Receipt",
    "StoredToken",
    "TokenRecord",
    "decode_value",
    "encode_value",
    "env_name",
    "optional",
    "printable",
    "slash_path",
    "value_fingerprint",
]

JSON_TOKEN_FIELD = "motherduck_token"

# Value checks a backend's Config can use (the built-in Vault models and the config's fast
# loader do): each returns the value or raises ValueError with the message to show.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(value: str) -> str:
    """The name of an environment variable a backend reads a credential from."""
    if not _ENV_NAME.fullmatch(value):
        raise ValueError("must be an environment variable name")
    return value


def printable(value: str) -> str:
    """A non-empty value without control characters (a role, a field, a namespace)."""
    if not value:
        raise ValueError("must not be empty")
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


def optional(check: Callable[[str], str]) -> Callable[[str | None], str | None]:
    """`check` for a value that may be left out (None passes)."""
    return lambda value: None if value is None else check(value)


def slash_path(value: str) -> str:
    """A mount or secret path, outer slashes already stripped: no empty, `.` or `..` segment
    (an API path a proxy may normalise into another one)."""
    printable(value)
    if any(segment in ("", ".", "..") for segment in value.split("/")):
        raise ValueError("must not have empty, '.' or '..' segments")
    return value


Receipt = Mapping[str, str | int | None]
"""What `stage` returns and the checkpoint keeps: version ids and the like, no secrets."""

ValueFormat = Literal["json", "raw"]

KeySource = Callable[[], bytes]
"""Gives the state store's secret HMAC key (`StateStore.fingerprint_key`), on first need."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token and the metadata written beside it."""

    token: Secret
    token_id: str
    token_name: str
    created_ts: str | None = None
    expire_at: str | None = None


@dataclass(frozen=True, slots=True)
class StoredToken:
    """One value as a backend holds it.

    `token_id`/`token_name` are None when the backend cannot tell (a raw value written by
    hand); `version` is the backend's own version label (Vault version number, AWS
    VersionId); `run_id` is the rotator run that wrote it, where the backend keeps it.
    """

    token: Secret
    token_id: str | None = None
    token_name: str | None = None
    created_ts: str | None = None
    expire_at: str | None = None
    version: str | None = None
    run_id: str | None = None


@runtime_checkable
class Backend(Protocol):
    """What the engine needs from a secret store. Structural: plugins need not subclass."""

    @property
    def label(self) -> str:
        """A stable, secret-free name like `vault:secret/app/md` used in checkpoints and logs."""
        ...

    def read_current(self) -> StoredToken | None:
        """Return what a consumer reads now, or None when nothing is stored yet.

        Raises BackendError (naming the resource) when the store cannot be read.
        """
        ...

    def read_staged(self, run_id: str) -> StoredToken | None:
        """Return the value `run_id` staged, whether still pending or already current.

        None when nothing this run wrote is present (never staged, or rolled back).
        """
        ...

    def stage(self, record: TokenRecord, *, run_id: str) -> Receipt:
        """Store `record` for `run_id` without disturbing the current value's readers.

        Idempotent: if `run_id` already staged this token, return the same receipt.
        Raises BackendConflict if another writer got in between (CAS, foreign pending).
        """
        ...

    def promote(self, receipt: Receipt, *, run_id: str) -> None:
        """Make the staged value current. Idempotent; a no-op where staging made it current."""
        ...

    def rollback(self, receipt: Receipt | None, *, run_id: str) -> None:
        """Undo `run_id`'s stage/promote: the value from before `stage` is current again.

        Idempotent; a no-op when nothing of `run_id` is present. `receipt` is None when the
        run crashed before recording the stage's outcome: find the run's value by run id.
        """
        ...

    def describe(self) -> dict[str, str]:
        """Secret-free facts for `rotator status`/`drift` (type, location, format...)."""
        ...


class BackendFactory(Protocol):
    """What an entry point in `rotator.backends` must load to."""

    Config: ClassVar[type[BackendConfig]]

    @classmethod
    def from_config(cls, config: Any, *, account: str, base_dir: Path) -> Backend: ...


def value_fingerprint(token: Secret, run_id: str, key: bytes | None) -> str:
    """The fingerprint a backend keeps beside a value written by `run_id` (never the value).

    An HMAC under a per-run key derived from the state store's secret key, so whoever can
    read a sidecar, Vault metadata or tags cannot test guesses against it (the run id is
    public). `key` is None only for a backend used outside an engine (tests, scripts),
    which then keys by the run id alone.
    """
    if key is None:
        return token.fingerprint(run_id.encode())
    return token.fingerprint(hmac.new(key, run_id.encode(), hashlib.sha256).digest())


def encode_value(record: TokenRecord, fmt: ValueFormat) -> str:
    """Serialize a record for a backend that stores one string."""
    if fmt == "raw":
        return record.token.reveal()
    return json.dumps(
        {
            JSON_TOKEN_FIELD: record.token.reveal(),
            "token_id": record.token_id,
            "token_name": record.token_name,
            "created_ts": record.created_ts,
            "expire_at": record.expire_at,
        },
        sort_keys=True,
    )


def decode_value(text: str, **extra: str | None) -> StoredToken:
    """Parse a stored string in either format; a bare token (raw, or hand-written) works too.

    `extra` fills fields the string itself does not carry (version, run_id, or token_id
    from backend metadata for raw values).
    """
    fields: dict[str, str | None] = {}
    token = text.strip()
    if token.startswith("{"):
        try:
            data = json.loads(token)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get(JSON_TOKEN_FIELD), str):
            token = data[JSON_TOKEN_FIELD]
            for key in ("token_id", "token_name", "created_ts", "expire_at"):
                value = data.get(key)
                fields[key] = value if isinstance(value, str) else None
    for key, value in extra.items():
        if value is not None or key not in fields:
            fields[key] = value
    return StoredToken(token=Secret(token), **fields)


class CheckedTable(dict[str, Any]):
    """A backend table already proved valid for its backend's `Config`, kept as the dict.

    Only the pydantic-free config loader makes these (rotator/config/fast.py), and only for
    the built-in `file`, `aws-secrets-manager` and `vault` types, after checking every key
    as their model (`FileConfig`, `SecretsManagerConfig`, `VaultConfig`) would: the
    engine then builds the backend from the table (`from_config`) without importing
    pydantic. Anything else asking for the account's backends gets the models.
    """

    @property
    def type(self) -> str:
        return str(self["type"])


class ModelOnDemand:
    """A backend's `Config` class attribute that imports its pydantic model on first read.

    `FileBackend.Config` is `backends.models.FileConfig`, but loading the backend class
    (an entry point, at every config load) does not import pydantic.
    """

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> type[BackendConfig]:
        import importlib

        model: type[BackendConfig] = getattr(importlib.import_module(self.module), self.name)
        return model


def __getattr__(name: str) -> Any:
    """`BackendConfig` (a pydantic model, in backends/models) is imported on first use.

    Importing this module, which the engine does for every run, then costs no pydantic.
    """
    if name == "BackendConfig":
        from backends.models import BackendConfig

        return BackendConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
