"""One account's `rotate`: the admin-token probe overlaps the run's first reads, never its effects.

`rotator rotate U` sends the probe (`GET /v1/active_accounts`, issue 14) from a thread and
lets the run read meanwhile (its lease, the preflight listing, the backends); the run's
first checkpoint and first side effect wait for the probe's answer. A rejected admin
token must therefore still be exit 2 with nothing created, revoked, stored or recorded,
also when the probe answers last; a good one rotates as before. Real processes, the
simulator over HTTP, the file backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.rotator_cli import CliSetup, adopted_fleet, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username

SLOW = 2.0  # seconds the simulator holds the probe's answer: the preflight listing answers first


def adopted(sim: Any, tmp_path: Path, policy: str = "") -> tuple[CliSetup, str, str]:
    user = unique_username()
    secret, token_id = sim.seed(user, token_name="initial")
    cli = CliSetup(tmp_path, sim.url, sim.admin_token, [user], policy=policy).write()
    seed_file(cli.secret_file(user), secret, token_id)
    done = cli.run("adopt", user, "--token-id", token_id)
    assert done.returncode == 0, done.stderr
    return cli, user, token_id


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]


def routes(sim: Any) -> list[str]:
    return [r["route"] for r in sim.requests()]


def mutations(sim: Any) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["method"] != "GET"]


class Snapshot:
    """What a run could change: the simulator's live tokens, the backend file, the state."""

    def __init__(self, sim: Any, cli: CliSetup, user: str) -> None:
        self.live = sim.live_token_ids(user)
        self.served = cli.secret_file(user).read_bytes()
        self.runs = sorted(cli.runs(), key=lambda r: str(r["run_id"]))
        self.account = cli.account_doc(user)

    def assert_unchanged(self, sim: Any, cli: CliSetup, user: str) -> None:
        after = Snapshot(sim, cli, user)
        assert after.live == self.live
        assert after.served == self.served
        assert after.runs == self.runs
        assert after.account == self.account


class TestRejectedProbeChangesNothing:
    @pytest.mark.parametrize(
        ("delay", "status"),
        [(0.0, 401), (SLOW, 401), (SLOW, 403)],
        ids=["prompt-401", "slow-401", "slow-403"],
    )
    def test_due_account_with_a_rejected_probe(
        self, simulator: Any, tmp_path: Path, delay: float, status: int
    ) -> None:
        """The probe is refused (slowly: the preflight listing answers first): exit 2, nothing done."""
        cli, user, old_id = adopted(simulator, tmp_path)
        before = Snapshot(simulator, cli, user)
        assert before.live == {old_id} and before.runs == []
        simulator.clear_requests()
        if delay:
            simulator.add_fault(route="active_accounts", action="delay", seconds=delay)
        simulator.add_fault(route="active_accounts", action="error", status=status)
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 2, (done.stdout, done.stderr)
        [line] = error_lines(done.stderr)
        assert line.startswith("rotator: error: ") and "/v1/active_accounts" in line
        if status == 401:
            assert "admin token was rejected" in line
        assert "Traceback" not in done.stderr and done.stdout == ""
        asked = routes(simulator)
        if delay:
            # The run read while the probe was pending, and did nothing after its answer.
            # (The listing was once seen twice before the probe's answer on a loaded machine,
            # cause not found; it is a read, so the count of listings is not pinned.)
            assert set(asked) == {"list_tokens", "active_accounts"}, asked
            assert asked.count("active_accounts") == 1 and asked[-1] == "active_accounts", asked
        else:
            assert sorted(asked) == ["active_accounts", "list_tokens"], asked
        assert mutations(simulator) == []
        before.assert_unchanged(simulator, cli, user)
        assert read_secret(cli.secret_file(user))["token_id"] == old_id

    def test_garbage_admin_token_with_a_slow_probe(self, simulator: Any, tmp_path: Path) -> None:
        """A token MotherDuck rejects everywhere: the listing fails first, the probe's error is told."""
        cli, user, _ = adopted(simulator, tmp_path)
        before = Snapshot(simulator, cli, user)
        simulator.clear_requests()
        simulator.add_fault(route="active_accounts", action="delay", seconds=SLOW)
        done = cli.run("rotate", user, "--force", env=cli.env(TEST_MD_ADMIN="garbage"))
        assert done.returncode == 2, (done.stdout, done.stderr)
        [line] = error_lines(done.stderr)
        assert "GET /v1/active_accounts" in line and "admin token was rejected" in line
        assert mutations(simulator) == []
        before.assert_unchanged(simulator, cli, user)

    def test_resumed_run_waits_for_the_probe(self, simulator: Any, tmp_path: Path) -> None:
        """A run waiting for its revoke and a rejected probe: not revoked, not touched, exit 2."""
        cli, user, old_id = adopted(simulator, tmp_path, 'revoke_grace = "1h"')
        first = cli.run("rotate", user, "--force", "--json")
        assert first.returncode == 0, first.stderr
        [waiting] = json_lines(first.stdout)
        assert waiting["state"] == "awaiting_revoke"
        before = Snapshot(simulator, cli, user)
        assert before.live == {old_id, waiting["new_token_id"]}
        simulator.clear_requests()
        simulator.add_fault(route="active_accounts", action="delay", seconds=SLOW)
        simulator.add_fault(route="active_accounts", action="error", status=401)
        done = cli.run("rotate", user, "--revoke-now", "--json")
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "admin token was rejected" in done.stderr and done.stdout == ""
        assert routes(simulator) == ["active_accounts"]  # the resumed run read nothing first
        before.assert_unchanged(simulator, cli, user)
        # The token fixed, the same run carries on and revokes the old token.
        simulator.clear_faults()
        again = cli.run("rotate", user, "--revoke-now", "--json")
        assert again.returncode == 0, again.stderr
        [doc] = json_lines(again.stdout)
        assert doc["result"] == "completed" and doc["run_id"] == waiting["run_id"]
        assert simulator.live_token_ids(user) == {waiting["new_token_id"]}


class TestGoodProbe:
    def test_slow_probe_then_the_rotation_as_before(self, simulator: Any, tmp_path: Path) -> None:
        """The probe answers after the preflight listing: the create waits for it, then all goes on."""
        cli, user, old_id = adopted(simulator, tmp_path)
        simulator.clear_requests()
        simulator.add_fault(route="active_accounts", action="delay", seconds=SLOW)
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        [doc] = json_lines(done.stdout)
        assert doc["result"] == "completed" and doc["old_token_id"] == old_id
        # The simulator records a request before it answers it: the create was sent only
        # once the probe had its answer.
        assert routes(simulator) == [
            "list_tokens",
            "active_accounts",
            "create_token",
            "list_tokens",
            "revoke_token",
            "list_tokens",
        ]
        assert simulator.live_token_ids(user) == {doc["new_token_id"]}
        assert read_secret(cli.secret_file(user))["token_id"] == doc["new_token_id"]


class TestFleet:
    """A pass over several accounts, in this process (`--processes 1`) or in workers
    (`--processes 2`, the gate answered over a pipe): the probe overlaps the runs' first
    reads there too, and gates their checkpoints and side effects."""

    @pytest.mark.parametrize("processes", ["1", "2"])
    @pytest.mark.parametrize("garbage", [False, True], ids=["refused-probe", "garbage-token"])
    def test_rejected_probe_changes_nothing(
        self, simulator: Any, tmp_path: Path, processes: str, garbage: bool
    ) -> None:
        """Refused slowly (the runs read meanwhile): exit 2, the probe's one line, no
        account touched, no worker noise, nothing created or revoked."""
        cli, users = adopted_fleet(simulator, tmp_path, 4)
        before = {user: Snapshot(simulator, cli, user) for user in users}
        simulator.clear_requests()
        simulator.add_fault(route="active_accounts", action="delay", seconds=SLOW)
        env = cli.env(TEST_MD_ADMIN="garbage") if garbage else cli.env()
        if not garbage:
            simulator.add_fault(route="active_accounts", action="error", status=401)
        done = cli.run("rotate", "--all", "--force", "--json", "--processes", processes,
                       "--concurrency", "4", env=env)
        assert done.returncode == 2, (done.stdout, done.stderr)
        [line] = error_lines(done.stderr)
        assert "GET /v1/active_accounts" in line and "admin token was rejected" in line
        assert "Traceback" not in done.stderr and done.stdout == ""
        assert "list_tokens" in routes(simulator)  # the runs did read while it was pending
        assert mutations(simulator) == []
        for user in users:
            before[user].assert_unchanged(simulator, cli, user)

    @pytest.mark.parametrize("processes", ["1", "2"])
    def test_slow_probe_gates_every_effect_then_the_pass_goes_on(
        self, simulator: Any, tmp_path: Path, processes: str
    ) -> None:
        """The probe answers after the preflight listings: every create was sent after its
        answer (the simulator records a request before it answers), and the pass completes."""
        cli, users = adopted_fleet(simulator, tmp_path, 4)
        simulator.clear_requests()
        simulator.add_fault(route="active_accounts", action="delay", seconds=SLOW)
        done = cli.run("rotate", "--all", "--force", "--json", "--processes", processes,
                       "--concurrency", "4")
        assert done.returncode == 0, done.stderr
        docs = json_lines(done.stdout)
        assert [d["account"] for d in docs] == users
        assert {d["result"] for d in docs} == {"completed"}
        asked = routes(simulator)
        probe = asked.index("active_accounts")
        assert asked.count("active_accounts") == 1, asked
        assert "list_tokens" in asked[:probe]  # the first reads overlapped the probe
        assert not {"create_token", "revoke_token"} & set(asked[:probe]), asked
        for doc in docs:
            assert simulator.live_token_ids(doc["account"]) == {doc["new_token_id"]}
            assert read_secret(cli.secret_file(doc["account"]))["token_id"] == doc["new_token_id"]
