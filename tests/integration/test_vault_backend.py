"""The `vault` backend against a real OpenBao dev server.

Each test asserts what OpenBao holds as a consumer (or an operator, with the root client)
would read it: the latest version's field, the version history, the custom_metadata.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from backends import load_factory
from backends.base import TokenRecord
from backends.vault import VaultBackend, VaultConfig
from rotator.errors import BackendConflict, BackendError
from rotator.secret import Secret
from tests.support.openbao_fixtures import OpenBaoHandle, start_openbao
from tests.support.procs import free_port

OLD = {"motherduck_token": "old-secret", "token_id": "tok-old", "other": "keep-me"}


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after the injected step runs."""


def record(n: int = 1) -> TokenRecord:
    return TokenRecord(
        Secret(f"new-secret-{n}"), f"tok-{n}", f"rotator-svc-{n}", "2026-11-23T00:00:00Z", None
    )


def backend(
    server: OpenBaoHandle, path: str, *, fmt: str = "json", client: Any = None, **cfg: Any
) -> VaultBackend:
    config = VaultConfig.model_validate(
        {"type": "vault", "url": server.url, "path": path, "format": fmt, **cfg}
    )
    return VaultBackend(config, client=client or server.root_client())


def seed(server: OpenBaoHandle, path: str, data: dict[str, str] | None = None) -> None:
    server.root_client().secrets.kv.v2.create_or_update_secret(path, data or OLD)


def latest(server: OpenBaoHandle, path: str) -> dict[str, Any]:
    """The latest version's data, as a consumer reads it."""
    response = server.root_client().secrets.kv.v2.read_secret_version(
        path, raise_on_deleted_version=True
    )
    return dict(response["data"]["data"])


def metadata(server: OpenBaoHandle, path: str) -> dict[str, Any]:
    return dict(server.root_client().secrets.kv.v2.read_secret_metadata(path)["data"])


def crash_at(vb: VaultBackend, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def reached(name: str) -> None:
        if name == step:
            raise Crash(step)

    monkeypatch.setattr(vb, "_reached", reached)


def killed_in_stage(
    bao: OpenBaoHandle, kv_path: str, step: str, monkeypatch: pytest.MonkeyPatch, fmt: str = "json"
) -> VaultBackend:
    """Seed the secret, run stage for run-a until `step` and die there; the backend comes
    back with its crash hook removed, like the next process would find it."""
    seed(bao, kv_path)
    vb = backend(bao, kv_path, fmt=fmt)
    crash_at(vb, step, monkeypatch)
    with pytest.raises(Crash):
        vb.stage(record(), run_id="run-a")
    monkeypatch.undo()
    return vb


class TestRoundTrip:
    def test_json_round_trip(self, openbao_server: OpenBaoHandle, kv_path: str) -> None:
        """stage writes a new version consumers read at once; promote changes nothing."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)
        before = vb.read_current()
        assert before is not None and before.token_id == "tok-old" and before.version == "1"
        receipt = vb.stage(record(), run_id="run-a")
        assert receipt == {"mount": "secret", "path": kv_path, "version": 2, "previous_version": 1}
        assert latest(openbao_server, kv_path) == {
            "motherduck_token": "new-secret-1",
            "token_id": "tok-1",
            "token_name": "rotator-svc-1",
            "created_ts": "2026-11-23T00:00:00Z",
            "other": "keep-me",
        }
        staged = vb.read_staged("run-a")
        assert staged is not None and staged.token.reveal() == "new-secret-1"
        vb.promote(receipt, run_id="run-a")
        assert metadata(openbao_server, kv_path)["current_version"] == 2
        current = vb.read_current()
        assert current is not None and current.token_id == "tok-1"
        assert current.version == "2" and current.run_id == "run-a"

    def test_raw_round_trip(self, openbao_server: OpenBaoHandle, kv_path: str) -> None:
        """Raw format writes only the field; the token id comes from custom_metadata."""
        vb = backend(openbao_server, kv_path, fmt="raw", field="token")
        assert vb.read_current() is None
        receipt = vb.stage(record(), run_id="run-a")
        assert receipt["version"] == 1 and receipt["previous_version"] == 0
        assert latest(openbao_server, kv_path) == {"token": "new-secret-1"}
        current = vb.read_current()
        assert current is not None and current.token.reveal() == "new-secret-1"
        assert current.token_id == "tok-1" and current.token_name == "rotator-svc-1"

    def test_custom_metadata_records_the_run(
        self, openbao_server: OpenBaoHandle, kv_path: str
    ) -> None:
        """custom_metadata names token id, name, run and time; other keys stay; no secret."""
        seed(openbao_server, kv_path)
        openbao_server.root_client().secrets.kv.v2.update_metadata(
            kv_path, custom_metadata={"owner": "team-data"}
        )
        backend(openbao_server, kv_path).stage(record(), run_id="run-a")
        custom = metadata(openbao_server, kv_path)["custom_metadata"]
        assert custom["owner"] == "team-data"
        assert custom["rotator_token_id"] == "tok-1"
        assert custom["rotator_token_name"] == "rotator-svc-1"
        assert custom["rotator_run_id"] == "run-a"
        assert custom["rotator_rotated_at"].startswith("20")
        assert custom["rotator_version"] == "2"
        assert not any(k.startswith("rotator_pending") for k in custom)
        assert "new-secret" not in json.dumps(custom) and "old-secret" not in json.dumps(custom)

    def test_loads_through_the_entry_point(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`type = "vault"` resolves to this backend, which logs in with VAULT_TOKEN."""
        monkeypatch.setenv("VAULT_TOKEN", openbao_server.root_token)
        factory = load_factory("vault")
        config = factory.Config.model_validate(
            {"type": "vault", "url": openbao_server.url, "path": kv_path}
        )
        vb = factory.from_config(config, account="svc", base_dir=Path("."))
        assert vb.label == f"vault:secret/{kv_path}"
        assert vb.describe()["auth"] == "token"
        assert vb.read_current() is None


class TestAuthAndErrors:
    def test_approle_least_privilege(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """AppRole under a policy for just this secret can stage and roll back; elsewhere it
        gets a one-line permission-denied error naming the path."""
        role_id, secret_id = openbao_server.make_approle([kv_path])
        monkeypatch.setenv("TEST_ROLE_ID", role_id)
        monkeypatch.setenv("TEST_SECRET_ID", secret_id)
        auth = {
            "method": "approle",
            "role_id_env": "TEST_ROLE_ID",
            "secret_id_env": "TEST_SECRET_ID",
        }
        seed(openbao_server, kv_path)
        config = VaultConfig.model_validate(
            {"type": "vault", "url": openbao_server.url, "path": kv_path, "auth": auth}
        )
        vb = VaultBackend(config)
        receipt = vb.stage(record(), run_id="run-a")
        assert latest(openbao_server, kv_path)["motherduck_token"] == "new-secret-1"
        vb.rollback(receipt, run_id="run-a")
        assert latest(openbao_server, kv_path) == OLD
        other = kv_path.replace("/md", "/elsewhere")
        outside = VaultBackend(config.model_copy(update={"path": other}))
        with pytest.raises(BackendError, match="permission denied") as info:
            outside.read_current()
        message = str(info.value)
        assert f"secret/data/{other}" in message and openbao_server.url in message
        assert "\n" not in message and secret_id not in message

    def test_bad_token(self, openbao_server: OpenBaoHandle, kv_path: str) -> None:
        """An invalid token is reported as permission denied, naming url and path."""
        import hvac

        vb = backend(
            openbao_server, kv_path, client=hvac.Client(url=openbao_server.url, token="nope")
        )
        with pytest.raises(BackendError, match="permission denied"):
            vb.read_current()

    def test_missing_token_env(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A missing VAULT_TOKEN is a clear login error, before any request."""
        monkeypatch.delenv("VAULT_TOKEN", raising=False)
        config = VaultConfig(type="vault", url=openbao_server.url, path=kv_path)
        with pytest.raises(BackendError, match="VAULT_TOKEN"):
            VaultBackend(config).read_current()

    def test_kv_v1_refused(self, openbao_server: OpenBaoHandle, kv_path: str) -> None:
        """A KV version 1 mount is refused before anything is written."""
        mount = openbao_server.kv_v1_mount()
        vb = backend(openbao_server, kv_path, mount=mount)
        with pytest.raises(BackendError, match="KV version 1, not KV v2"):
            vb.stage(record(), run_id="run-a")
        import hvac.exceptions

        kv1 = openbao_server.root_client().secrets.kv.v1
        for written in (kv_path, f"data/{kv_path}", f"metadata/{kv_path}"):
            with pytest.raises(hvac.exceptions.InvalidPath):
                kv1.read_secret(written, mount_point=mount)

    def test_missing_mount(self, openbao_server: OpenBaoHandle, kv_path: str) -> None:
        """A mount that does not exist is named in the error."""
        with pytest.raises(BackendError, match="mount 'nosuchmount' does not exist"):
            backend(openbao_server, kv_path, mount="nosuchmount").read_current()

    def test_unreachable(self, kv_path: str) -> None:
        """A URL nobody listens on gives a one-line 'cannot reach' error naming it."""
        import hvac

        url = f"http://127.0.0.1:{free_port()}"
        config = VaultConfig(type="vault", url=url, path=kv_path, timeout=2)
        vb = VaultBackend(config, client=hvac.Client(url=url, token="x", timeout=2))
        with pytest.raises(BackendError, match="cannot reach") as info:
            vb.read_current()
        assert url in str(info.value)

    def test_sealed(self, tmp_path: Path, kv_path: str) -> None:
        """A sealed server (a private one, not the shared one) says to unseal it."""
        server = start_openbao(tmp_path / "sealed")
        try:
            vb = backend(server, kv_path)
            assert vb.read_current() is None
            server.root_client().sys.seal()
            with pytest.raises(BackendError, match="sealed; unseal it"):
                vb.read_current()
        finally:
            server.stop()


class TestConflictsAndRollback:
    def test_cas_conflict_leaves_nothing_half_written(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A writer between our read and our write wins; we raise BackendConflict and take
        our marker back."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)

        def other_writer(step: str) -> None:
            if step == "marker_written":
                seed(openbao_server, kv_path, {"motherduck_token": "by-someone-else"})

        monkeypatch.setattr(vb, "_reached", other_writer)
        with pytest.raises(BackendConflict, match="check-and-set") as info:
            vb.stage(record(), run_id="run-a")
        assert "new-secret" not in str(info.value)
        assert latest(openbao_server, kv_path) == {"motherduck_token": "by-someone-else"}
        meta = metadata(openbao_server, kv_path)
        assert meta["current_version"] == 2
        assert not any(k.startswith("rotator_") for k in meta["custom_metadata"] or {})
        assert vb.read_staged("run-a") is None
        vb.rollback(None, run_id="run-a")
        assert metadata(openbao_server, kv_path)["current_version"] == 2

    def test_rollback_writes_a_new_version(
        self, openbao_server: OpenBaoHandle, kv_path: str
    ) -> None:
        """Rollback restores the old data (other keys too) as version 3; history stays."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)
        receipt = vb.stage(record(), run_id="run-a")
        vb.rollback(receipt, run_id="run-a")
        assert latest(openbao_server, kv_path) == OLD
        meta = metadata(openbao_server, kv_path)
        assert meta["current_version"] == 3
        assert all(not v["deletion_time"] and not v["destroyed"] for v in meta["versions"].values())
        assert meta["custom_metadata"]["rotator_rolled_back_run_id"] == "run-a"
        assert vb.read_staged("run-a") is None
        current = vb.read_current()
        assert current is not None and current.token_id == "tok-old"
        vb.rollback(receipt, run_id="run-a")
        vb.rollback(None, run_id="run-a")
        assert metadata(openbao_server, kv_path)["current_version"] == 3

    def test_raw_rollback_restores_previous_run_metadata(
        self, openbao_server: OpenBaoHandle, kv_path: str
    ) -> None:
        """In raw format, the token id of the restored value is reported again after rollback."""
        vb = backend(openbao_server, kv_path, fmt="raw")
        vb.stage(record(1), run_id="run-a")
        receipt = vb.stage(record(2), run_id="run-b")
        vb.rollback(receipt, run_id="run-b")
        current = vb.read_current()
        assert current is not None and current.token.reveal() == "new-secret-1"
        assert current.token_id == "tok-1" and current.version == "3"

    def test_rollback_of_first_write(self, openbao_server: OpenBaoHandle, kv_path: str) -> None:
        """When the secret did not exist, rollback writes an empty version: no token again."""
        vb = backend(openbao_server, kv_path)
        receipt = vb.stage(record(), run_id="run-a")
        vb.rollback(receipt, run_id="run-a")
        assert latest(openbao_server, kv_path) == {}
        assert vb.read_current() is None

    def test_rollback_refuses_to_overwrite_a_later_writer(
        self, openbao_server: OpenBaoHandle, kv_path: str
    ) -> None:
        """If someone wrote after our version, rollback raises and leaves their value."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)
        receipt = vb.stage(record(), run_id="run-a")
        seed(openbao_server, kv_path, {"motherduck_token": "later"})
        with pytest.raises(BackendConflict, match="version 3 was written after run run-a"):
            vb.rollback(receipt, run_id="run-a")
        assert latest(openbao_server, kv_path) == {"motherduck_token": "later"}
        assert vb.read_staged("run-a") is None

    def test_stage_replay_writes_nothing(self, openbao_server: OpenBaoHandle, kv_path: str) -> None:
        """Staging the same token for the same run again adds no version."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)
        first = vb.stage(record(), run_id="run-a")
        before = metadata(openbao_server, kv_path)
        assert vb.stage(record(), run_id="run-a") == first
        after = metadata(openbao_server, kv_path)
        assert after["current_version"] == 2
        assert after["current_metadata_version"] == before["current_metadata_version"]

    def test_next_run_stages_after_a_finished_one(
        self, openbao_server: OpenBaoHandle, kv_path: str
    ) -> None:
        """A second run stages over the first; its receipt points back at the first's version."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)
        vb.stage(record(1), run_id="run-a")
        receipt = vb.stage(record(2), run_id="run-b")
        assert receipt["version"] == 3 and receipt["previous_version"] == 2
        assert vb.read_staged("run-a") is None
        vb.rollback(receipt, run_id="run-b")
        assert latest(openbao_server, kv_path)["motherduck_token"] == "new-secret-1"


class TestCrashPoints:
    def test_crash_after_marker_then_resume(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Killed after the marker, before the data: nothing staged; stage again works once."""
        vb = killed_in_stage(openbao_server, kv_path, "marker_written", monkeypatch)
        assert latest(openbao_server, kv_path) == OLD
        assert vb.read_staged("run-a") is None
        assert vb.stage(record(), run_id="run-a")["version"] == 2
        assert metadata(openbao_server, kv_path)["current_version"] == 2

    def test_crash_after_marker_then_rollback(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Killed after the marker: rollback(None) just takes the marker back."""
        vb = killed_in_stage(openbao_server, kv_path, "marker_written", monkeypatch)
        vb.rollback(None, run_id="run-a")
        meta = metadata(openbao_server, kv_path)
        assert meta["current_version"] == 1
        assert not any(k.startswith("rotator_") for k in meta["custom_metadata"] or {})

    def test_crash_after_data_then_resume(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Killed after the data, before the final metadata: read_staged finds the value
        through the marker, and stage again only finishes the metadata."""
        vb = killed_in_stage(openbao_server, kv_path, "data_written", monkeypatch, fmt="raw")
        staged = vb.read_staged("run-a")
        assert staged is not None and staged.token.reveal() == "new-secret-1"
        assert vb.stage(record(), run_id="run-a")["version"] == 2
        custom = metadata(openbao_server, kv_path)["custom_metadata"]
        assert custom["rotator_run_id"] == "run-a" and "rotator_pending_run_id" not in custom
        assert metadata(openbao_server, kv_path)["current_version"] == 2

    def test_crash_after_data_then_rollback(
        self, openbao_server: OpenBaoHandle, kv_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Killed after the data: rollback(None) finds the run's version through the marker."""
        vb = killed_in_stage(openbao_server, kv_path, "data_written", monkeypatch)
        vb.rollback(None, run_id="run-a")
        assert latest(openbao_server, kv_path) == OLD
        assert metadata(openbao_server, kv_path)["current_version"] == 3

    @pytest.mark.parametrize("step", ["rollback_marker_written", "restored"])
    def test_crash_in_rollback_then_replay(
        self,
        openbao_server: OpenBaoHandle,
        kv_path: str,
        monkeypatch: pytest.MonkeyPatch,
        step: str,
    ) -> None:
        """Killed inside rollback: replaying it restores exactly once (one new version)."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)
        receipt = vb.stage(record(), run_id="run-a")
        crash_at(vb, step, monkeypatch)
        with pytest.raises(Crash):
            vb.rollback(receipt, run_id="run-a")
        monkeypatch.undo()
        vb.rollback(None, run_id="run-a")
        vb.rollback(None, run_id="run-a")
        assert latest(openbao_server, kv_path) == OLD
        meta = metadata(openbao_server, kv_path)
        assert meta["current_version"] == 3
        assert "rotator_rollback_run_id" not in meta["custom_metadata"]


class TestConsumerView:
    def test_consumer_sees_only_old_or_new(
        self, openbao_server: OpenBaoHandle, kv_path: str
    ) -> None:
        """A consumer polling the latest version during stage/promote/rollback cycles only
        ever reads the old token or the one being staged."""
        seed(openbao_server, kv_path)
        vb = backend(openbao_server, kv_path)
        seen: list[object] = []
        stop = threading.Event()
        reader = openbao_server.root_client()

        def consume() -> None:
            while not stop.is_set():
                response = reader.secrets.kv.v2.read_secret_version(
                    kv_path, raise_on_deleted_version=True
                )
                seen.append(response["data"]["data"].get("motherduck_token"))

        thread = threading.Thread(target=consume)
        thread.start()
        try:
            for i in range(12):
                receipt = vb.stage(record(i), run_id=f"run-{i}")
                vb.promote(receipt, run_id=f"run-{i}")
                vb.rollback(receipt, run_id=f"run-{i}")
        finally:
            stop.set()
            thread.join()
        allowed = {"old-secret"} | {f"new-secret-{i}" for i in range(12)}
        assert seen and set(seen) <= allowed
        assert latest(openbao_server, kv_path) == OLD
        assert metadata(openbao_server, kv_path)["current_version"] == 25
