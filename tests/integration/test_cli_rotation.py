"""`rotator` as a user runs it: a real subprocess, the simulator over HTTP, the file backend.

Every assertion looks at the outside world: the simulator's live tokens, what its data
plane says about a token, and the secret file a consumer reads.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from rotator.engine.runrecord import RunState
from tests.support.procs import wait_until
from tests.support.rotator_cli import CliSetup, json_lines, read_secret, scan_for_secrets, seed_file
from tests.support.simulator_fixtures import unique_username


def setup_account(
    sim: Any, tmp_path: Path, policy: str = "", adopt: bool = True
) -> tuple[CliSetup, str, str, str]:
    user = unique_username()
    old_secret, old_id = sim.seed(user, token_name="initial")
    cli = CliSetup(tmp_path, sim.url, sim.admin_token, [user], policy=policy).write()
    seed_file(cli.secret_file(user), old_secret, old_id)
    if adopt:
        done = cli.run("adopt", user, "--token-id", old_id)
        assert done.returncode == 0, done.stderr
    return cli, user, old_secret, old_id


class TestRotate:
    def test_full_rotation(self, simulator: Any, tmp_path: Path) -> None:
        """rotate creates, stores, verifies and revokes: only the new token is live and served."""
        cli, user, old_secret, old_id = setup_account(
            simulator, tmp_path, 'checks = ["readback", "simulator"]'
        )
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        [result] = json_lines(done.stdout)
        assert result["state"] == "completed" and result["revoked"] is True
        assert result["old_token_id"] == old_id
        stored = read_secret(cli.secret_file(user))
        assert stored["token_id"] == result["new_token_id"]
        assert simulator.live_token_ids(user) == {result["new_token_id"]}
        assert simulator.whoami(stored["motherduck_token"]) == user
        assert simulator.whoami(old_secret) is None
        assert (cli.secret_file(user).stat().st_mode & 0o777) == 0o600

    def test_second_run_is_not_due(self, simulator: Any, tmp_path: Path) -> None:
        """Right after a rotation, a cron run does nothing and mints nothing."""
        cli, user, _, _ = setup_account(simulator, tmp_path)
        assert cli.run("rotate", user, "--force").returncode == 0
        simulator.clear_requests()
        done = cli.run("rotate", user, "--json")
        assert done.returncode == 0
        assert json_lines(done.stdout)[0]["result"] == "not_due"
        assert [r for r in simulator.requests() if r["method"] != "GET"] == []

    def test_dry_run_is_provably_dry(self, simulator: Any, tmp_path: Path) -> None:
        """--dry-run makes zero mutating calls and changes no file."""
        cli, user, _, _ = setup_account(simulator, tmp_path)
        before = cli.secret_file(user).read_bytes()
        state_before = sorted(p.name for p in cli.state_dir.rglob("*"))
        simulator.clear_requests()
        done = cli.run("rotate", user, "--force", "--dry-run", "--json")
        assert done.returncode == 0, done.stderr
        assert json_lines(done.stdout)[0]["result"] == "would_rotate"
        assert {r["method"] for r in simulator.requests()} <= {"GET"}
        assert cli.secret_file(user).read_bytes() == before
        assert sorted(p.name for p in cli.state_dir.rglob("*")) == state_before

    def test_bootstrap_adopts(self, simulator: Any, tmp_path: Path) -> None:
        """An account with no known token gets its first managed one; the old stays live.

        The backend holds a bare token (no id): one carrying a live token id the state
        store does not know is refused instead (tests/integration/test_state_loss.py).
        """
        cli, user, old_secret, old_id = setup_account(simulator, tmp_path, adopt=False)
        cli.secret_file(user).write_text(old_secret)
        done = cli.run("rotate", user, "--json")
        assert done.returncode == 0, done.stderr
        [result] = json_lines(done.stdout)
        assert result["result"] == "adopted" and result["revoked"] is False
        assert simulator.live_token_ids(user) == {old_id, result["new_token_id"]}

    def test_grace_then_second_process_revokes(self, simulator: Any, tmp_path: Path) -> None:
        """With a grace, the old token stays valid; a later process (clock past it) revokes."""
        cli, user, old_secret, old_id = setup_account(simulator, tmp_path, 'revoke_grace = "1h"')
        first = cli.run(
            "rotate",
            user,
            "--force",
            "--json",
            env=cli.env(ROTATOR_NOW="2030-01-01T00:00:00+00:00"),
        )
        assert first.returncode == 0, first.stderr
        [result] = json_lines(first.stdout)
        assert result["state"] == "awaiting_revoke"
        assert simulator.whoami(old_secret) == user
        status = cli.run("status", "--json", env=cli.env(ROTATOR_NOW="2030-01-01T00:10:00+00:00"))
        assert json_lines(status.stdout)[0]["pending_revoke_at"].startswith("2030-01-01T01:00:00")
        early = cli.run(
            "rotate", user, "--json", env=cli.env(ROTATOR_NOW="2030-01-01T00:30:00+00:00")
        )
        assert json_lines(early.stdout)[0]["state"] == "awaiting_revoke"
        late = cli.run(
            "rotate", user, "--json", env=cli.env(ROTATOR_NOW="2030-01-01T01:00:01+00:00")
        )
        assert late.returncode == 0, late.stderr
        assert json_lines(late.stdout)[0]["state"] == "completed"
        assert simulator.live_token_ids(user) == {result["new_token_id"]}
        assert old_id not in simulator.live_token_ids(user)

    def test_failed_check_rolls_back(self, simulator: Any, tmp_path: Path) -> None:
        """A failing check restores the file byte-for-byte and revokes the new token (exit 1)."""
        policy = 'checks = ["readback", {type = "command", command = ["false"]}]'
        cli, user, old_secret, old_id = setup_account(simulator, tmp_path, policy)
        before = cli.secret_file(user).read_bytes()
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        [result] = json_lines(done.stdout)
        assert result["state"] == "rolled_back"
        assert cli.secret_file(user).read_bytes() == before
        assert simulator.live_token_ids(user) == {old_id}
        assert simulator.whoami(old_secret) == user


class TestBadInput:
    def test_missing_admin_token(self, simulator: Any, tmp_path: Path) -> None:
        """No admin token in the environment: exit 2, one line, nothing created."""
        cli, user, _, _ = setup_account(simulator, tmp_path)
        env = cli.env()
        env.pop("TEST_MD_ADMIN")
        simulator.clear_requests()
        done = cli.run("rotate", user, "--force", env=env)
        assert done.returncode == 2
        assert "TEST_MD_ADMIN is not set" in done.stderr
        assert "Traceback" not in done.stderr
        assert simulator.requests() == []

    def test_non_admin_token(self, simulator: Any, tmp_path: Path) -> None:
        """A valid but non-admin token: exit 2 naming the role, and no token minted."""
        cli, user, _old_secret, old_id = setup_account(simulator, tmp_path)
        other = unique_username()
        member_secret, _ = simulator.seed(other)
        done = cli.run("rotate", user, "--force", env=cli.env(TEST_MD_ADMIN=member_secret))
        assert done.returncode == 2, done.stderr
        assert "org_admin" in done.stderr
        assert simulator.live_token_ids(user) == {old_id}

    def test_unknown_account_and_bad_config(self, simulator: Any, tmp_path: Path) -> None:
        """An unconfigured username and a broken config both exit 2 with one line."""
        cli, user, _, _ = setup_account(simulator, tmp_path)
        done = cli.run("rotate", "svc_nobody")
        assert done.returncode == 2 and "svc_nobody" in done.stderr
        cli.config_path.write_text(
            cli.config_path.read_text().replace('path = "state"', "path = 5")
        )
        done = cli.run("rotate", user)
        assert done.returncode == 2
        assert "state.path" in done.stderr and "Traceback" not in done.stderr

    def test_adopt_token_of_another_account(self, simulator: Any, tmp_path: Path) -> None:
        """Adopting a token id that belongs to another account is refused (exit 2)."""
        cli, user, _, _ = setup_account(simulator, tmp_path, adopt=False)
        _, foreign_id = simulator.seed(unique_username())
        done = cli.run("adopt", user, "--token-id", foreign_id)
        assert done.returncode == 2
        assert "not a live token" in done.stderr


class TestConcurrencyAndCrashes:
    def test_racing_processes_make_one_replacement(self, simulator: Any, tmp_path: Path) -> None:
        """Eight processes started together on one account: one rotates, seven exit 3."""
        cli, user, _, _ = setup_account(simulator, tmp_path)
        # Slow enough that the winner still holds the lease when the last process starts.
        simulator.set_latency(1.0)
        simulator.clear_requests()
        procs = [cli.start("rotate", user, "--force", "--json") for _ in range(8)]
        results = [(proc.communicate(timeout=180), proc.returncode) for proc in procs]
        simulator.set_latency(0)
        codes = sorted(code for _, code in results)
        assert codes == [0] + [3] * 7, [err for (_, err), _ in results]
        for (_, err), code in results:
            if code == 3:
                assert "being rotated by" in err and "Traceback" not in err
        creates = [r for r in simulator.requests() if r["route"] == "create_token"]
        assert len(creates) == 1
        assert len(simulator.live_token_ids(user)) == 1

    @pytest.mark.parametrize(
        "kill_in", ["creating", "storing", "verifying", "promoting", "revoking"]
    )
    def test_sigkill_then_resume(self, simulator: Any, tmp_path: Path, kill_in: str) -> None:
        """SIGKILL while a step is in flight; the next run resumes to exactly one live token."""
        cli, user, old_secret, _old_id = setup_account(
            simulator, tmp_path, 'checks = ["readback", "simulator"]'
        )
        simulator.set_latency(0.3)
        proc = cli.start("rotate", user, "--force", "--json")
        order = [s.value for s in RunState]

        def reached() -> bool:
            # Steps without a network call pass quickly; kill at that state or just after.
            return any(order.index(r["state"]) >= order.index(kill_in) for r in cli.runs())

        wait_until(reached, timeout=60, interval=0.005, what=f"run state {kill_in}")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        simulator.set_latency(0)
        stored = read_secret(cli.secret_file(user))
        assert simulator.whoami(stored["motherduck_token"]) == user  # I1 right after the kill
        deadline = time.monotonic() + 60
        while True:
            done = cli.run("rotate", user, "--json")
            if done.returncode == 0 or time.monotonic() > deadline:
                break
        assert done.returncode == 0, done.stdout + done.stderr
        stored = read_secret(cli.secret_file(user))
        assert simulator.live_token_ids(user) == {stored["token_id"]}
        assert simulator.whoami(stored["motherduck_token"]) == user
        assert simulator.whoami(old_secret) is None
        made = [t for t in simulator.tokens(user, live_only=False) if t["name"] != "initial"]
        assert all(not t["live"] or t["id"] == stored["token_id"] for t in made)

    def test_no_secret_in_any_output(self, simulator: Any, tmp_path: Path) -> None:
        """Logs, CLI output and state files of a rotation never contain any issued secret."""
        cli, user, _, _ = setup_account(simulator, tmp_path)
        outputs: list[str | bytes] = []
        for args in (
            ("rotate", user, "--force", "--json"),
            ("status",),
            ("history", user),
            ("tokens", user),
        ):
            done = cli.run(*args)
            outputs += [done.stdout, done.stderr]
            done = cli.run("--log-format", "console", *args)
            outputs += [done.stdout, done.stderr]
        outputs += [
            p.read_bytes() for p in cli.state_dir.rglob("*") if p.is_file() and p.name != "key"
        ]
        assert scan_for_secrets(outputs, simulator.all_secrets()) == []
