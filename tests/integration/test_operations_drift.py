"""`rotator drift` and `rotator status` against the simulator and a real OpenBao: each kind of
drift made on purpose in the outside world, then detected; and what is not drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.rotator_cli import CliSetup, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username


class Rig:
    """An account with a file backend and (optionally) a Vault KV backend, adopted."""

    def __init__(
        self, sim: Any, tmp_path: Path, bao: Any = None, kv_path: str | None = None, policy: str = ""
    ) -> None:
        self.sim, self.bao, self.kv_path = sim, bao, kv_path
        self.user = unique_username()
        self.old_secret, self.old_id = sim.seed(self.user, token_name="initial")
        tables = [f'type = "file"\npath = "secrets/{self.user}.json"']
        env = {}
        if bao is not None:
            self.write_vault(self.old_secret, self.old_id)
            tables.append(f'type = "vault"\nurl = "{bao.url}"\npath = "{kv_path}"\ntimeout = 3')
            env["VAULT_TOKEN"] = bao.root_token
        self.cli = CliSetup(
            tmp_path, sim.url, sim.admin_token, [self.user], {self.user: tables},
            policy=policy, extra_env=env,
        ).write()
        seed_file(self.cli.secret_file(self.user), self.old_secret, self.old_id)
        done = self.cli.run("adopt", self.user, "--token-id", self.old_id)
        assert done.returncode == 0, done.stderr

    def write_vault(self, secret: str, token_id: str | None) -> None:
        data = {"motherduck_token": secret}
        if token_id:
            data["token_id"] = token_id
        self.bao.root_client().secrets.kv.v2.create_or_update_secret(self.kv_path, data)

    def vault_version(self) -> int:
        meta = self.bao.root_client().secrets.kv.v2.read_secret_metadata(self.kv_path)
        return int(meta["data"]["current_version"])

    def rotate(self, *args: str) -> dict[str, Any]:
        done = self.cli.run("rotate", self.user, "--force", "--json", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return json_lines(done.stdout)[0]

    def drift(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.cli.run("drift", "--json", *args)
        assert "Traceback" not in done.stderr, done.stderr
        [report] = json_lines(done.stdout)
        return done.returncode, report


def codes(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["severity"], f["code"]) for f in report["findings"]}


class TestDrift:
    def test_clean_after_rotation_and_reads_only(
        self, simulator: Any, openbao_server: Any, kv_path: str, tmp_path: Path
    ) -> None:
        """After a rotation drift is clean (exit 0), and checking made no write anywhere."""
        rig = Rig(simulator, tmp_path, openbao_server, kv_path)
        result = rig.rotate()
        state_before = {p: p.read_bytes() for p in rig.cli.state_dir.rglob("*") if p.is_file()}
        version = rig.vault_version()
        simulator.clear_requests()
        code, report = rig.drift()
        assert code == 0, report
        assert report["findings"] == [] and report["drift"] is None
        assert {b["token_id"] for b in report["backends"]} == {result["new_token_id"]}
        assert report["live_token_ids"] == [result["new_token_id"]]
        assert {r["method"] for r in simulator.requests()} == {"GET"}
        assert rig.vault_version() == version
        assert {p: p.read_bytes() for p in rig.cli.state_dir.rglob("*") if p.is_file()} == state_before

    def test_vault_on_a_revoked_token(
        self, simulator: Any, openbao_server: Any, kv_path: str, tmp_path: Path
    ) -> None:
        """Someone writes the revoked old token back into Vault: critical, naming the backend."""
        rig = Rig(simulator, tmp_path, openbao_server, kv_path)
        rig.rotate()
        rig.write_vault(rig.old_secret, rig.old_id)
        code, report = rig.drift("--fail-on", "critical")
        assert code == 1
        assert {("critical", "backend_on_dead_token"), ("critical", "backends_disagree")} <= codes(report)
        [dead] = [f for f in report["findings"] if f["code"] == "backend_on_dead_token"]
        assert dead["backend"].startswith("vault:") and dead["token_id"] == rig.old_id
        assert simulator.whoami(rig.old_secret) is None  # the outside world agrees: it is dead

    def test_backend_value_without_token_id(
        self, simulator: Any, openbao_server: Any, kv_path: str, tmp_path: Path
    ) -> None:
        """A bare value the store cannot match is reported as an unknown token id."""
        rig = Rig(simulator, tmp_path, openbao_server, kv_path)
        other_secret, _ = simulator.seed(rig.user, token_name="by-hand")
        rig.write_vault(other_secret, None)
        code, report = rig.drift()
        assert code == 1
        assert ("warning", "backend_token_id_unknown") in codes(report)
        [vault] = [b for b in report["backends"] if b["label"].startswith("vault:")]
        assert vault["token_id"] is None

    def test_bare_value_matched_by_fingerprint(
        self, simulator: Any, openbao_server: Any, kv_path: str, tmp_path: Path
    ) -> None:
        """A value without token id that is the store's own token is identified, not flagged."""
        rig = Rig(simulator, tmp_path, openbao_server, kv_path)
        rig.rotate()
        stored = read_secret(rig.cli.secret_file(rig.user))
        rig.write_vault(stored["motherduck_token"], None)
        code, report = rig.drift()
        assert code == 0, report
        [vault] = [b for b in report["backends"] if b["label"].startswith("vault:")]
        assert vault["id_source"] == "fingerprint" and vault["token_id"] == stored["token_id"]

    def test_backends_disagree_on_live_tokens(
        self, simulator: Any, openbao_server: Any, kv_path: str, tmp_path: Path
    ) -> None:
        """Vault and the file on two different live tokens: a warning, not critical."""
        rig = Rig(simulator, tmp_path, openbao_server, kv_path)
        other_secret, other_id = simulator.seed(rig.user, token_name="by-hand")
        rig.write_vault(other_secret, other_id)
        code, report = rig.drift()
        assert code == 1 and ("warning", "backends_disagree") in codes(report)
        assert report["drift"] == "warning"
        assert rig.drift("--fail-on", "critical")[0] == 0

    def test_unknown_extra_token_is_listed_never_revoked(self, simulator: Any, tmp_path: Path) -> None:
        """A hand-made live token is reported with its id and left alive."""
        rig = Rig(simulator, tmp_path)
        _, extra_id = simulator.seed(rig.user, token_name="by-hand")
        code, report = rig.drift()
        assert code == 1
        [extra] = [f for f in report["findings"] if f["code"] == "unknown_live_token"]
        assert extra["token_id"] == extra_id and extra["severity"] == "warning"
        assert rig.drift("--fail-on", "critical")[0] == 0
        assert extra_id in simulator.live_token_ids(rig.user)

    def test_token_expiring_before_due(self, simulator: Any, tmp_path: Path) -> None:
        """A ttl'd token that expires before created + rotate_after is flagged."""
        rig = Rig(simulator, tmp_path)
        secret, token_id = simulator.seed(rig.user, token_name="short", ttl=3600)
        seed_file(rig.cli.secret_file(rig.user), secret, token_id)
        assert rig.cli.run("adopt", rig.user, "--token-id", token_id).returncode == 0
        simulator.api("DELETE", f"/v1/users/{rig.user}/tokens/{rig.old_id}")
        code, report = rig.drift()
        assert code == 1
        assert codes(report) == {("warning", "expires_before_due")}

    def test_state_token_revoked_behind_our_back(self, simulator: Any, tmp_path: Path) -> None:
        """The current token revoked outside rotator: the store and the backend are critical."""
        rig = Rig(simulator, tmp_path)
        assert simulator.api("DELETE", f"/v1/users/{rig.user}/tokens/{rig.old_id}").status_code == 200
        code, report = rig.drift("--fail-on", "critical")
        assert code == 1
        assert {("critical", "state_token_dead"), ("critical", "backend_on_dead_token")} <= codes(report)

    def test_grace_period_is_not_drift(self, simulator: Any, tmp_path: Path) -> None:
        """Awaiting revoke, old and new both live: clean, with the pending revoke noted."""
        rig = Rig(simulator, tmp_path, policy='revoke_grace = "1h"')
        result = rig.rotate()
        assert result["state"] == "awaiting_revoke"
        assert simulator.live_token_ids(rig.user) == {rig.old_id, result["new_token_id"]}
        code, report = rig.drift()
        assert code == 0, report
        assert report["pending_revoke_at"] and rig.old_id in report["expected"][0]

    def test_human_table_and_usage_errors(self, simulator: Any, tmp_path: Path) -> None:
        """Without --json a plain table names the finding; an unknown account exits 2."""
        rig = Rig(simulator, tmp_path)
        simulator.seed(rig.user, token_name="by-hand")
        done = rig.cli.run("drift")
        assert done.returncode == 1
        header, *rows = done.stdout.splitlines()
        assert header.split() == ["ACCOUNT", "SEVERITY", "CODE", "BACKEND", "DETAIL"]
        assert any("unknown_live_token" in row for row in rows)
        assert "\x1b[" not in done.stdout  # no colour codes when not a terminal
        bad = rig.cli.run("drift", "svc_nobody")
        assert bad.returncode == 2 and "svc_nobody" in bad.stderr


class TestStatus:
    def test_status_picture(self, simulator: Any, tmp_path: Path) -> None:
        """status shows age vs policy, next due, last outcome; the drift column only with --drift."""
        rig = Rig(simulator, tmp_path, policy='rotate_after = "10d"')
        result = rig.rotate()
        simulator.clear_requests()
        plain = rig.cli.run("status", "--json")
        assert plain.returncode == 0, plain.stderr
        [doc] = json_lines(plain.stdout)
        assert simulator.requests() == []  # state only: MotherDuck not asked
        assert doc["current_token_id"] == result["new_token_id"] and doc["pending_revoke_at"] is None
        assert doc["rotate_after"] == "10d" and doc["last_outcome"] == "completed"
        assert doc["due"] is False and doc["drift"] is None
        assert doc["next_due_at"].startswith(doc["created_ts"][:4])
        simulator.seed(rig.user, token_name="by-hand")
        [with_drift] = json_lines(rig.cli.run("status", "--drift", "--json").stdout)
        assert with_drift["drift"] == "warning"
        assert with_drift["drift_findings"] == ["unknown_live_token"]
        table = rig.cli.run("status", "--drift")
        header, row = table.stdout.splitlines()
        assert header.split()[:3] == ["ACCOUNT", "TOKEN", "AGE"] and "DRIFT" in header
        assert result["new_token_id"][:8] in row and row.rstrip().endswith("warning")

    def test_status_json_keeps_old_keys(self, simulator: Any, tmp_path: Path) -> None:
        """Existing keys stay: scripts that read status --json keep working."""
        rig = Rig(simulator, tmp_path)
        [doc] = json_lines(rig.cli.run("status", "--json").stdout)
        for key in (
            "account", "current_token_id", "token_age", "created_ts", "expire_at", "last_run_id",
            "last_state", "last_success_at", "active_run", "pending_revoke_at",
        ):
            assert key in doc, key
        assert json.dumps(doc)  # plain JSON
