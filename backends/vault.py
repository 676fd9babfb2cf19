"""The `vault` backend: one token in a KV v2 secret of Vault or OpenBao.

KV v2 has no pending/current split: `stage` writes a new version with check-and-set, and
consumers (Vault Agent, external-secrets, apps) see the new token from that moment on;
`promote` is a no-op. `rollback` writes the pre-stage data back as a *new* version (history
is never deleted or destroyed). Other keys in the secret and other custom_metadata keys
are kept on every write.

Crash safety comes from write-ahead markers in the secret's custom_metadata (strings,
never a secret; values are matched by an HMAC fingerprint keyed with the state store's
secret key and the run id, `backends.base.value_fingerprint`):

    rotator_pending_run_id / _token_id / _fingerprint / _base   before the data write
    rotator_previous_version, rotator_previous                  what rollback restores
    rotator_run_id / _token_id / _token_name / _rotated_at /
      _version / _fingerprint                                   after it: who wrote which version
    rotator_rollback_run_id / _base                              before rollback's data write
    rotator_rolled_back_run_id                                  after it

Fencing (I4) and concurrent writers: every custom_metadata change goes through
`KvStore.update_custom` (read, merge only our changes, write, read back: KV v2 metadata has
no check-and-set), which also records `rotator_fence`, the highest lease fencing number the
secret was written under, and refuses a write from an older lease. Every data write is
preceded by a fresh check of that key and made with check-and-set on the version read, so
a run that stalled past its lease is refused either by the fence (its successor wrote
since) or by the CAS (someone wrote data since its read).

The HTTP calls and the error mapping live in `backends._vault_kv.KvStore`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from backends._lease import LeaseGuard, fence_of
from backends._vault_auth import VaultSettings
from backends._vault_kv import FENCE_KEY, KvStore
from backends.base import (
    CheckedTable,
    KeySource,
    ModelOnDemand,
    Receipt,
    StoredToken,
    TokenRecord,
    value_fingerprint,
)
from rotator.errors import BackendConflict, BackendError
from rotator.secret import Secret

if TYPE_CHECKING:
    from backends.models.vault import VaultConfig

log = structlog.get_logger("rotator.backends.vault")


def __getattr__(name: str) -> Any:
    """`VaultConfig` (pydantic) is imported on first use, not with this module."""
    if name == "VaultConfig":
        from backends.models.vault import VaultConfig

        return VaultConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["VaultBackend", "VaultConfig"]

P = "rotator_"
PENDING = (
    P + "pending_run_id",
    P + "pending_token_id",
    P + "pending_fingerprint",
    P + "pending_base",
)
FINAL = ("run_id", "token_id", "token_name", "rotated_at", "version", "fingerprint")
ROLLBACK = (P + "rollback_run_id", P + "rollback_base")
JSON_KEYS = ("token_id", "token_name", "created_ts", "expire_at")


def fingerprint(token: Secret, run_id: str, key: bytes | None = None) -> str:
    """The value's HMAC for the run that wrote it, under the store's key: reveals nothing."""
    return value_fingerprint(token, run_id, key)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class VaultBackend:
    """A token in one KV v2 secret; see the module docstring for the metadata it keeps."""

    # A pydantic model: imported when first read, not with this module.
    Config = ModelOnDemand("backends.models.vault", "VaultConfig")

    def __init__(
        self,
        config: VaultConfig | VaultSettings,
        *,
        base_dir: Path | None = None,
        client: Any = None,
        clock: Callable[[], str] = _now,
    ) -> None:
        # The model and a checked table give the same plain settings: the same backend.
        config = config if isinstance(config, VaultSettings) else VaultSettings.of(config)
        self.config = config
        self.kv = KvStore(config, base_dir=base_dir or Path.cwd(), client=client)
        self.mount = config.mount
        self.path = config.path
        self._clock = clock
        self._key_source: KeySource | None = None
        self._lease: LeaseGuard | None = None

    def use_fingerprint_key(self, source: KeySource) -> None:
        """Key the metadata fingerprints with the state store secret key (the engine calls it)."""
        self._key_source = source

    def _fp(self, token: Secret, run_id: str) -> str:
        return fingerprint(token, run_id, self._key_source() if self._key_source else None)

    def bind_lease(self, guard: LeaseGuard | None) -> None:
        """Fence every later write with the run's lease (see the module docstring)."""
        self._lease = guard

    def _update(self, base: dict[str, str], new: dict[str, str]) -> dict[str, str]:
        return self.kv.update_custom(base, new, guard=self._lease)

    def _write_data(self, data: dict[str, Any], *, cas: int) -> int:
        self.kv.check_fence(self._lease)
        return self.kv.write_data(data, cas=cas)

    @classmethod
    def from_config(cls, config: Any, *, account: str, base_dir: Path) -> VaultBackend:
        """Build from a validated `VaultConfig`; relative `ca_cert`/`jwt_path` use `base_dir`."""
        if isinstance(config, CheckedTable):  # proved valid by the fast loader: no pydantic
            return cls(VaultSettings.from_table(config), base_dir=base_dir)
        from backends.models.vault import VaultConfig

        cfg = config if isinstance(config, VaultConfig) else VaultConfig.model_validate(config)
        return cls(cfg, base_dir=base_dir)

    @property
    def label(self) -> str:
        return f"vault:{self.mount}/{self.path}"

    def describe(self) -> dict[str, str]:
        facts = {
            "type": "vault",
            "url": self.config.url,
            "mount": self.mount,
            "path": self.path,
            "field": self.config.field,
            "format": self.config.format,
            "auth": self.config.auth.method,
            "promote": "no-op: consumers read the new version as soon as it is staged",
        }
        if self.config.namespace:
            facts["namespace"] = self.config.namespace
        return facts

    # -- reads ---------------------------------------------------------------------------

    def read_current(self) -> StoredToken | None:
        """The latest version's field as a consumer reads it; None if absent or deleted."""
        with self.kv.errors("reading"):
            latest = self.kv.latest()
            return None if latest is None else self._stored(*latest)

    def read_staged(self, run_id: str) -> StoredToken | None:
        """The value `run_id` wrote, if it is still the latest version; else None."""
        with self.kv.errors("reading the staged value"):
            current, custom = self.kv.meta()
            version = self._own_version(custom, current, run_id)
            if version is None:
                return None
            data = self.kv.data(version)
            if self._value_fp(data, run_id) != self._own_fp(custom, run_id):
                return None
            return self._stored(data, custom, version)

    # -- writes --------------------------------------------------------------------------

    def stage(self, record: TokenRecord, *, run_id: str) -> Receipt:
        """Write `record` as a new version with check-and-set; consumers see it at once.

        Safe to replay: if this run's exact token is the latest version, only the final
        metadata is (re)written. Raises BackendConflict when another writer got in between
        (the write-ahead marker is then taken back, nothing half-written remains).
        """
        fp = self._fp(record.token, run_id)
        with self.kv.errors("staging"):
            current, custom = self.kv.meta()
            mine = self._own_version(custom, current, run_id)
            if mine is not None and self._value_fp(self.kv.data(mine), run_id) == fp:
                return self._finish_stage(custom, record, run_id, mine)
            ours = run_id in (custom.get(PENDING[0]), custom.get(P + "run_id"))
            marker = {k: v for k, v in custom.items() if k not in PENDING + ROLLBACK}
            marker.pop(P + "rolled_back_run_id", None)
            if not ours or P + "previous_version" not in custom:
                marker[P + "previous_version"] = str(current)
                marker[P + "previous"] = _snapshot(custom)
            marker.update(zip(PENDING, (run_id, record.token_id, fp, str(current)), strict=True))
            written = self._update(custom, marker)
            self._reached("marker_written")
            data = self._merge(self.kv.data(current) if current else {}, record)
            try:
                with self.kv.errors("staging"):
                    version = self._write_data(data, cas=current)
            except BackendConflict:
                with contextlib.suppress(BackendError):
                    self._update(written, custom)  # take back only our marker, if still ours
                raise
            self._reached("data_written")
            return self._finish_stage(written, record, run_id, version)

    def promote(self, receipt: Receipt, *, run_id: str) -> None:
        """Nothing to do: the staged version is already what consumers read."""

    def rollback(self, receipt: Receipt | None, *, run_id: str) -> None:
        """Write the pre-stage data back as a new version (cas = this run's version).

        Safe to replay (a rollback marker finishes an interrupted one); a no-op when
        nothing of `run_id` is present. Raises BackendConflict when someone wrote after
        this run, and BackendError when the version to restore was deleted or destroyed.
        """
        with self.kv.errors("rolling back"):
            current, custom = self.kv.meta()
            if custom.get(ROLLBACK[0]) == run_id:
                self._finish_rollback(custom, current, run_id)
                return
            mine = self._own_version(custom, current, run_id)
            if custom.get(PENDING[0]) == run_id:
                base = int(custom[PENDING[3]])
                if mine is None or self._value_fp(self.kv.data(mine), run_id) != custom[PENDING[2]]:
                    if (
                        current > base + 1
                        and self._value_fp(self.kv.data(base + 1), run_id) == (custom[PENDING[2]])
                    ):
                        raise self._overwritten(run_id, base + 1, current)
                    self._update(custom, _without(custom, PENDING, "previous_version", "previous"))
                    return
            elif custom.get(P + "run_id") == run_id:
                if mine is None:
                    raise self._overwritten(run_id, int(custom[P + "version"]), current)
            else:
                self._raise_fence(custom, current)
                return
            marker = {**custom, ROLLBACK[0]: run_id, ROLLBACK[1]: str(current)}
            marker = self._update(custom, marker)
            self._reached("rollback_marker_written")
            self._finish_rollback(marker, current, run_id)

    def _raise_fence(self, custom: dict[str, str], current: int) -> None:
        """A rollback with nothing to undo still raises the fence, so a stale stage stops.

        Best effort: nothing of this run is in the secret, so consumers are safe whatever
        happens here; a token that may not write metadata (403) is logged, not fatal, and
        the stale run is still stopped by the lease check right before its stage.
        """
        if self._lease is None or not current:
            return
        if fence_of(custom.get(FENCE_KEY)) >= self._lease.fence:
            return
        try:
            with self.kv.errors("raising the lease fence on"):
                self._update(custom, custom)
        except BackendError as exc:
            log.warning("backend.fence_not_raised", backend=self.label, error=str(exc))

    # -- steps ---------------------------------------------------------------------------

    def _finish_stage(
        self, custom: dict[str, str], record: TokenRecord, run_id: str, version: int
    ) -> Receipt:
        previous = int(custom.get(P + "previous_version", "0"))
        done = custom.get(P + "run_id") == run_id and custom.get(P + "version") == str(version)
        if not done or PENDING[0] in custom:
            final = _without(custom, PENDING)
            values = (run_id, record.token_id, record.token_name, self._clock(), str(version))
            final.update({P + k: v for k, v in zip(FINAL, values, strict=False)})
            final[P + "fingerprint"] = self._fp(record.token, run_id)
            self._update(custom, final)
        return {
            "mount": self.mount,
            "path": self.path,
            "version": version,
            "previous_version": previous,
        }

    def _finish_rollback(self, custom: dict[str, str], current: int, run_id: str) -> None:
        base = int(custom[ROLLBACK[1]])
        previous = int(custom.get(P + "previous_version", "0"))
        old = self.kv.data(previous) if previous else {}
        if old is None:
            raise BackendError(
                f"{self._where()}: version {previous} to restore is deleted or destroyed; "
                f"undelete it (bao kv undelete -versions={previous} -mount={self.mount} "
                f"{self.path}) or write the old token by hand",
                backend=self.label,
            )
        if current == base:
            version = self._write_data(old, cas=base)
            self._reached("restored")
        elif current == base + 1 and self.kv.data(current) == old:
            version = current
        else:
            raise self._overwritten(run_id, base, current)
        restored = {k: v for k, v in custom.items() if not k.startswith(P)}
        snapshot = _load_snapshot(custom.get(P + "previous"))
        if snapshot.get(P + "version") == str(previous):
            restored.update({**snapshot, P + "version": str(version)})
        restored[P + "rolled_back_run_id"] = run_id
        self._update(custom, restored)

    def _reached(self, step: str) -> None:
        """Called after each write; tests replace it to simulate a crash there."""

    # -- reading helpers -----------------------------------------------------------------

    def _own_version(self, custom: dict[str, str], current: int, run_id: str) -> int | None:
        """The version `run_id` wrote according to the markers, if it is the latest."""
        if custom.get(PENDING[0]) == run_id:
            version = int(custom.get(PENDING[3], "-1")) + 1
        elif custom.get(P + "run_id") == run_id:
            version = int(custom.get(P + "version", "-1"))
        else:
            return None
        return version if version == current and version > 0 else None

    @staticmethod
    def _own_fp(custom: dict[str, str], run_id: str) -> str | None:
        if custom.get(PENDING[0]) == run_id:
            return custom.get(PENDING[2])
        return custom.get(P + "fingerprint")

    def _value_fp(self, data: dict[str, Any] | None, run_id: str) -> str | None:
        value = (data or {}).get(self.config.field)
        return self._fp(Secret(value), run_id) if isinstance(value, str) else None

    def _stored(
        self, data: dict[str, Any] | None, custom: dict[str, str], version: int
    ) -> StoredToken | None:
        value = (data or {}).get(self.config.field)
        if not isinstance(value, str) or not value:
            return None
        facts: dict[str, str | None] = dict.fromkeys(JSON_KEYS)
        writer = custom.get(P + "run_id")
        if writer and custom.get(P + "version") == str(version):
            if self._fp(Secret(value), writer) == custom.get(P + "fingerprint"):
                facts["token_id"] = custom.get(P + "token_id")
                facts["token_name"] = custom.get(P + "token_name")
        else:
            writer = None
        if self.config.format == "json" and data is not None:
            for key in JSON_KEYS:
                if isinstance(data.get(key), str):
                    facts[key] = data[key]
        return StoredToken(Secret(value), **facts, version=str(version), run_id=writer)

    def _merge(self, data: dict[str, Any] | None, record: TokenRecord) -> dict[str, Any]:
        merged = dict(data or {})
        merged[self.config.field] = record.token.reveal()
        if self.config.format == "json":
            for key in JSON_KEYS:
                value = getattr(record, key)
                if value is not None:
                    merged[key] = value
                else:
                    merged.pop(key, None)
        return merged

    # -- errors --------------------------------------------------------------------------

    def _where(self) -> str:
        return self.kv.where()

    def _overwritten(self, run_id: str, ours: int, current: int) -> BackendConflict:
        return BackendConflict(
            f"{self._where()}: version {current} was written after run {run_id}'s version "
            f"{ours}; not overwriting it — check who wrote it, then restore by hand if needed",
            backend=self.label,
        )


def _snapshot(custom: dict[str, str]) -> str:
    """The final keys that describe the pre-stage version, as one custom_metadata value."""
    keep = {P + k: custom[P + k] for k in FINAL if P + k in custom}
    text = json.dumps(keep, sort_keys=True)
    if len(text) > 500:  # custom_metadata values are capped at 512 bytes
        keep.pop(P + "token_name", None)
        text = json.dumps(keep, sort_keys=True)
    return text


def _load_snapshot(text: str | None) -> dict[str, str]:
    try:
        doc = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in doc.items() if isinstance(v, str) and k.startswith(P)}


def _without(custom: dict[str, str], keys: tuple[str, ...], *names: str) -> dict[str, str]:
    drop = set(keys) | {P + n for n in names}
    return {k: v for k, v in custom.items() if k not in drop}
