"""A thin KV v2 client for the `vault` backend: one HTTP call per method, errors mapped once.

`KvStore` builds and logs in an hvac client lazily, refuses anything but a KV v2 mount,
and exposes the few reads and writes the backend's policy needs. `errors()` is the single
place where hvac/requests exceptions become one-line BackendErrors naming url, mount and
path (like httpx's `map_httpcore_exceptions`). hvac and requests are imported lazily.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from backends._lease import LeaseGuard, fence_of
from backends._vault_auth import LoginProblem, VaultSettings, login
from rotator.errors import BackendConflict, BackendCredentials, BackendError
from rotator.netpolicy import insecure_reason

__all__ = ["KvStore"]

log = structlog.get_logger("backends.vault")

_CAS_MISMATCH = "check-and-set parameter did not match"
FENCE_KEY = "rotator_fence"


class KvStore:
    """One KV v2 secret at `mount`/`path`; `client` may be injected (an hvac.Client)."""

    def __init__(self, config: VaultSettings, *, base_dir: Path, client: Any = None) -> None:
        self.config = config
        self.base_dir = base_dir
        self.mount = config.mount
        self.path = config.path
        self.label = f"vault:{self.mount}/{self.path}"
        self._hvac = client
        self._mount_checked = False

    def latest(self) -> tuple[dict[str, Any] | None, dict[str, str], int] | None:
        """(data, custom_metadata, version) of the latest version; None when absent.

        data is None when the latest version is deleted or destroyed.
        """
        found: list[bool] = []
        response: dict[str, Any] = {}
        with self._absent(found):
            response = self._kv().read_secret_version(
                self.path, mount_point=self.mount, raise_on_deleted_version=False
            )
        if found:
            return None
        body = response["data"]
        metadata = body.get("metadata") or {}
        if "custom_metadata" in metadata:
            custom = dict(metadata["custom_metadata"] or {})
        else:  # servers from before custom_metadata was part of data reads
            custom = self.meta()[1]
        data = body.get("data")
        return (data if isinstance(data, dict) else None), custom, int(metadata.get("version", 0))

    def meta(self) -> tuple[int, dict[str, str]]:
        """(current version, custom_metadata); (0, {}) when the secret does not exist."""
        found: list[bool] = []
        body: dict[str, Any] = {}
        with self._absent(found):
            body = self._kv().read_secret_metadata(self.path, mount_point=self.mount)["data"]
        if found:
            return 0, {}
        return int(body.get("current_version") or 0), dict(body.get("custom_metadata") or {})

    def data(self, version: int) -> dict[str, Any] | None:
        """One version's data; None when it is deleted, destroyed or gone."""
        found: list[bool] = []
        response: dict[str, Any] = {"data": {}}
        with self._absent(found):
            response = self._kv().read_secret_version(
                self.path, version=version, mount_point=self.mount, raise_on_deleted_version=False
            )
        data = response["data"].get("data")
        return dict(data) if isinstance(data, dict) else None

    def write_data(self, data: dict[str, Any], *, cas: int) -> int:
        response = self._kv().create_or_update_secret(
            self.path, data, cas=cas, mount_point=self.mount
        )
        return int(response["data"]["version"])

    def write_custom(self, custom: dict[str, str]) -> None:
        """Replace custom_metadata only (max_versions etc. are left as they are)."""
        from hvac import utils

        url = utils.format_url("/v1/{0}/metadata/{1}", self.mount, self.path)
        self.client().adapter.post(url, json={"custom_metadata": custom})

    def update_custom(
        self, base: dict[str, str], new: dict[str, str], *, guard: LeaseGuard | None = None
    ) -> dict[str, str]:
        """Change custom_metadata from `base` to `new` without erasing anyone else's keys.

        KV v2 metadata has no check-and-set, so this is read-merge-verify: re-read the
        metadata now; refuse (LeaseLost) if it carries a newer lease fence than `guard`'s;
        refuse (BackendConflict) if another writer changed a `rotator_` key this write
        changes since `base` was read; write the fresh metadata with only our changes
        applied (plus our fence); read it back and refuse if our changes are not there.
        Two writers racing inside one read-write window can still interleave, but neither
        erases a marker it did not read: the loser sees its own changes missing and stops.
        Returns what was written.
        """
        _, fresh = self.meta()
        seen = fence_of(fresh.get(FENCE_KEY))
        if guard is not None:
            guard.refuse_newer(seen, self.where())
        changed = {k: v for k, v in new.items() if base.get(k) != v and k != FENCE_KEY}
        removed = {k for k in base if k not in new and k != FENCE_KEY}
        moved = [
            k
            for k in sorted(set(changed) | removed)
            if k.startswith("rotator_") and fresh.get(k) not in (base.get(k), new.get(k))
        ]
        if moved:
            raise BackendConflict(
                f"{self.where()}: another writer changed {', '.join(moved)} in custom_metadata "
                "since this run read it; not overwriting it — run again",
                backend=self.label,
            )
        merged = {k: v for k, v in fresh.items() if k not in removed}
        merged.update(changed)
        fence = max(seen, guard.fence if guard is not None else 0)
        if fence:
            merged[FENCE_KEY] = str(fence)
        self.write_custom(merged)
        _, back = self.meta()
        if any(back.get(k) != v for k, v in changed.items()) or removed & set(back):
            raise BackendConflict(
                f"{self.where()}: another writer replaced custom_metadata while this run "
                "wrote it; its markers did not stick — run again",
                backend=self.label,
            )
        return merged

    def check_fence(self, guard: LeaseGuard | None) -> None:
        """Before a data write: LeaseLost if the secret carries a newer lease fence than ours."""
        if guard is not None:
            guard("vault.write_data")
            guard.refuse_newer(fence_of(self.meta()[1].get(FENCE_KEY)), self.where())

    def _kv(self) -> Any:
        return self.client().secrets.kv.v2

    @staticmethod
    @contextlib.contextmanager
    def _absent(found: list[bool]) -> Iterator[None]:
        """Swallow hvac's bare 404 (no such secret/version) and record it in `found`.

        A 404 *with* errors ("no handler for route": no such mount) is re-raised.
        """
        import hvac.exceptions

        try:
            yield
        except hvac.exceptions.InvalidPath as exc:
            if exc.errors:
                raise
            found.append(False)

    def client(self) -> Any:
        """The logged-in hvac client, built on first use; the mount is checked once."""
        if self._hvac is None:
            import hvac

            cfg = self.config
            verify: bool | str = cfg.verify
            if cfg.ca_cert and cfg.verify:
                ca = Path(cfg.ca_cert).expanduser()
                verify = str(ca if ca.is_absolute() else self.base_dir / ca)
            why = insecure_reason(cfg.url, verify=cfg.verify)
            if why:  # the config allows it only with insecure = true; said on every run
                log.warning("vault.insecure_url", backend=self.label, why=why)
            client = hvac.Client(
                url=cfg.url, namespace=cfg.namespace, verify=verify, timeout=cfg.timeout
            )
            try:
                with self.errors(f"logging in with {cfg.auth.method}"):
                    login(client, cfg.auth, base_dir=self.base_dir)
            except LoginProblem as exc:
                raise BackendCredentials(
                    f"{self.where()}: cannot log in with {cfg.auth.method}: {exc}",
                    backend=self.label,
                ) from exc
            self._hvac = client
        if not self._mount_checked:
            self._check_mount(self._hvac)
            self._mount_checked = True
        return self._hvac

    def _check_mount(self, client: Any) -> None:
        """Refuse anything but KV v2: check-and-set is how concurrent writers are detected."""
        import hvac.exceptions

        try:
            body = client.adapter.get(f"/v1/sys/internal/ui/mounts/{self.mount}")
        except hvac.exceptions.InvalidPath:
            # No such endpoint (old server): only KV v2 serves `<mount>/config`.
            config = client.adapter.get(f"/v1/{self.mount}/config").get("data") or {}
            body = {"data": {"type": "kv", "options": {"version": "2"}}}
            if "cas_required" not in config:
                body = {"data": {"type": "kv", "options": {"version": "1"}}}
        data = body.get("data") or {}
        kind, version = data.get("type"), (data.get("options") or {}).get("version")
        if kind not in ("kv", "generic") or str(version) != "2":
            what = f"KV version {version or 1}" if kind in ("kv", "generic") else f"a {kind} engine"
            raise BackendError(
                f"{self.where()}: mount {self.mount!r} is {what}, not KV v2; rotator needs KV v2 "
                f"(check-and-set detects concurrent writers): point `mount` at a KV v2 engine "
                f"or upgrade it (bao kv enable-versioning {self.mount})",
                backend=self.label,
            )

    def where(self) -> str:
        return f"{self.label} at {self.config.url}"

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Map hvac/requests exceptions to one-line BackendErrors naming url, mount and path."""
        import hvac.exceptions as hx
        import requests

        where = self.where()
        try:
            yield
        except BackendError:
            raise
        except hx.InvalidRequest as exc:
            if _CAS_MISMATCH in _reason(exc):
                raise BackendConflict(
                    f"{where}: another writer changed the secret while {doing} it "
                    "(check-and-set failed); nothing was overwritten — run again",
                    backend=self.label,
                ) from exc
            raise self._error(f"{doing} was rejected: {_reason(exc)}") from exc
        except hx.Forbidden as exc:
            reason = _reason(exc)
            if "preflight capability check" in reason:
                hint = f"mount {self.mount!r} does not exist or the token may use nothing in it"
            else:
                hint = (
                    "permission denied: is the token valid, and does its policy grant "
                    f"create/read/update on {self.mount}/data/{self.path} and "
                    f"{self.mount}/metadata/{self.path}?"
                )
            raise self._error(f"{doing} failed: {hint}") from exc
        except hx.VaultDown as exc:
            reason = (
                "the server is sealed; unseal it"
                if "sealed" in _reason(exc)
                else (f"the server is unavailable ({_reason(exc)})")
            )
            raise self._error(f"{doing} failed: {reason}, then run again") from exc
        except hx.InvalidPath as exc:
            raise self._error(
                f"{doing} failed: no such route ({_reason(exc)}); check `mount`"
            ) from exc
        except hx.VaultError as exc:
            raise self._error(f"{doing} failed: {type(exc).__name__} ({_reason(exc)})") from exc
        except requests.exceptions.SSLError as exc:
            raise self._error(
                "TLS verification failed; set `ca_cert` to the CA that signed the server"
            ) from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise self._error(
                f"cannot reach the server ({type(exc).__name__}); check `url` and that "
                "Vault is running"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise self._error(f"{doing} failed: {type(exc).__name__}") from exc

    def _error(self, message: str) -> BackendError:
        return BackendError(f"{self.where()}: {message}", backend=self.label)


def _reason(exc: Any) -> str:
    """hvac's error list as one short line."""
    errors = getattr(exc, "errors", None) or []
    text = "; ".join(str(e) for e in errors) or "no details"
    return re.sub(r"\s+", " ", text.replace("1 error occurred:", "")).strip(" ;*")[:200]
