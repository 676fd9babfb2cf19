"""Backends refuse writes from a lease older than the one that last wrote them, and Vault
custom_metadata is changed by read-merge-verify, never replaced from a stale snapshot.

Real OpenBao (KV v2), moto Secrets Manager and a real directory; the lease check the
engine passes in is a stub here (the stall harness drives the real one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backends._lease import LeaseGuard
from backends.aws_secrets_manager import SecretsManagerBackend, SecretsManagerConfig
from backends.base import TokenRecord
from backends.file import FileBackend
from rotator.errors import BackendConflict, LeaseLost
from rotator.secret import Secret
from tests.integration.test_vault_backend import backend as vault_backend
from tests.integration.test_vault_backend import latest, metadata, seed


def record(n: int) -> TokenRecord:
    return TokenRecord(Secret(f"fence-secret-{n}"), f"tok-{n}", f"rotator-svc-{n}")


def guard(fence: int, checked: list[str] | None = None) -> LeaseGuard:
    return LeaseGuard(fence, (checked if checked is not None else []).append)


class TestVault:
    def test_older_lease_cannot_stage_after_a_newer_one(
        self, openbao_server: Any, kv_path: str
    ) -> None:
        """B (fence 8) staged; A (fence 7) comes back: LeaseLost, nothing written."""
        seed(openbao_server, kv_path)
        b = vault_backend(openbao_server, kv_path)
        b.bind_lease(guard(8))
        b.stage(record(2), run_id="run-b")
        before = metadata(openbao_server, kv_path)
        a = vault_backend(openbao_server, kv_path)
        checked: list[str] = []
        a.bind_lease(guard(7, checked))
        with pytest.raises(LeaseLost, match="fence 8"):
            a.stage(record(1), run_id="run-a")
        assert latest(openbao_server, kv_path)["motherduck_token"] == "fence-secret-2"
        assert metadata(openbao_server, kv_path)["current_version"] == before["current_version"]
        assert metadata(openbao_server, kv_path)["custom_metadata"] == before["custom_metadata"]
        with pytest.raises(LeaseLost):
            a.rollback(None, run_id="run-b")  # nor undo B's work

    def test_stale_snapshot_does_not_erase_another_runs_markers(
        self, openbao_server: Any, kv_path: str
    ) -> None:
        """A write based on a snapshot from before run B's markers keeps B's markers."""
        seed(openbao_server, kv_path)
        vb = vault_backend(openbao_server, kv_path)
        stale = metadata(openbao_server, kv_path)["custom_metadata"] or {}
        vb.stage(record(2), run_id="run-b")
        markers = metadata(openbao_server, kv_path)["custom_metadata"]
        assert markers["rotator_run_id"] == "run-b"
        vb.kv.update_custom(dict(stale), {**stale, "owner": "team-x"})
        after = metadata(openbao_server, kv_path)["custom_metadata"]
        assert after == {**markers, "owner": "team-x"}

    def test_conflicting_marker_change_is_refused(
        self, openbao_server: Any, kv_path: str
    ) -> None:
        """Changing a marker another run changed since our read: BackendConflict, unchanged."""
        seed(openbao_server, kv_path)
        vb = vault_backend(openbao_server, kv_path)
        stale = {"rotator_run_id": "run-0"}
        vb.stage(record(2), run_id="run-b")
        markers = metadata(openbao_server, kv_path)["custom_metadata"]
        with pytest.raises(BackendConflict, match="rotator_run_id"):
            vb.kv.update_custom(stale, {"rotator_run_id": "run-a"})
        assert metadata(openbao_server, kv_path)["custom_metadata"] == markers


class TestFile:
    def test_older_lease_cannot_touch_the_file_after_a_newer_one(self, tmp_path: Path) -> None:
        path = tmp_path / "md.json"
        path.write_text('{"motherduck_token": "old", "token_id": "tok-0"}')
        b = FileBackend(path)
        b.bind_lease(guard(8))
        b.promote(b.stage(record(2), run_id="run-b"), run_id="run-b")
        a = FileBackend(path)
        a.bind_lease(guard(7))
        before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
        with pytest.raises(LeaseLost):
            a.stage(record(1), run_id="run-a")
        with pytest.raises(LeaseLost):
            a.rollback(None, run_id="run-b")
        assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before


class TestAws:
    def test_stale_awscurrent_move_is_undone(self, aws: Any) -> None:
        """A's AWSCURRENT move lands after `abort` (fence 9) rolled back: A moves it back."""
        sm = aws.client("secretsmanager")
        sm.create_secret(Name="fence/md", SecretString='{"motherduck_token": "old"}')
        cfg = SecretsManagerConfig.model_validate(
            {"type": "aws-secrets-manager", "secret_id": "fence/md", "region": aws.region,
             "endpoint_url": aws.endpoint_url}
        )  # fmt: skip
        a = SecretsManagerBackend(cfg)
        a.bind_lease(guard(7))
        receipt = a.stage(record(1), run_id="run-a")
        old_current = receipt["previous_version_id"]
        aborter = SecretsManagerBackend(cfg)
        aborter.bind_lease(guard(9))
        aborter.rollback(receipt, run_id="run-a")
        before = sm.describe_secret(SecretId="fence/md")["VersionIdsToStages"]
        # A passed its lease check before the abort; its promote now lands.
        with pytest.raises(LeaseLost):
            a.promote(receipt, run_id="run-a")
        stages = sm.describe_secret(SecretId="fence/md")["VersionIdsToStages"]
        assert "AWSCURRENT" in stages[str(old_current)]
        assert stages == before  # AWSPREVIOUS put back too
        value = sm.get_secret_value(SecretId="fence/md", VersionStage="AWSCURRENT")
        assert value["SecretString"] == '{"motherduck_token": "old"}'
