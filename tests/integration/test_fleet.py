"""Fleet features as a user runs them: real `rotator` processes against the simulator.

--shard (which accounts' tokens changed on the simulator), the weekly window with
ROTATOR_NOW pinned outside/inside it, `state prune` (files removed and kept, also on
DynamoDB), and progress on stderr (JSON log events; a live line on a terminal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rotator.schedule import shard_of
from rotator.state.dynamodb import DynamoDBStore, create_table
from tests.support.procs import run_with_terminal_stderr
from tests.support.rotator_cli import CliSetup, json_lines, seed_file
from tests.support.simulator_fixtures import unique_username

SAT = "2030-01-05T12:00:00+00:00"  # a Saturday
MON_0230 = "2030-01-07T02:30:00+00:00"  # the Monday after, inside Mon-Fri 02:00-05:00


def fleet(
    sim: Any,
    tmp_path: Path,
    count: int,
    policy: str = "",
    adopt: bool = False,
    files: bool = True,
) -> tuple[CliSetup, dict[str, str]]:
    """`count` accounts with a live token, in their secret file unless `files` is False
    (rotator refuses to mint over a live token its state store does not know, so a test
    of a first rotation leaves the file empty or adopts); returns {user: token id}."""
    users = [unique_username() for _ in range(count)]
    cli = CliSetup(tmp_path, sim.url, sim.admin_token, users, policy=policy).write()
    ids = {}
    for user in users:
        secret, token_id = sim.seed(user, token_name="initial")
        if files:
            seed_file(cli.secret_file(user), secret, token_id)
        ids[user] = token_id
        if adopt:
            done = cli.run("adopt", user, "--token-id", token_id)
            assert done.returncode == 0, done.stderr
    return cli, ids


def set_state(cli: CliSetup, line: str) -> None:
    text = cli.config_path.read_text().replace('path = "state"', f'path = "state"\n{line}')
    cli.config_path.write_text(text)


class TestShard:
    def test_each_shard_rotates_only_its_accounts(self, simulator: Any, tmp_path: Path) -> None:
        """rotate --shard 1/3 touches exactly the accounts hashed to shard 1; 0/3 and 2/3 the rest."""
        cli, ids = fleet(simulator, tmp_path, 6, files=False)
        shard1 = {u for u in ids if shard_of(u, 3) == 1}
        done = cli.run("rotate", "--shard", "1/3", "--json")
        assert done.returncode == 0, done.stderr
        assert {d["account"] for d in json_lines(done.stdout)} == shard1
        for user, old_id in ids.items():
            changed = simulator.live_token_ids(user) != {old_id}
            assert changed == (user in shard1), user
        status = cli.run("status", "--shard", "1/3", "--json")
        assert {d["account"] for d in json_lines(status.stdout)} == shard1
        for index in (0, 2):
            assert cli.run("rotate", "--shard", f"{index}/3").returncode == 0
        assert all(simulator.live_token_ids(u) != {i} for u, i in ids.items())

    @pytest.mark.parametrize("shard", ["3/3", "1/0", "x"])
    def test_bad_shard_is_refused(self, simulator: Any, tmp_path: Path, shard: str) -> None:
        """An index outside 0..N-1 exits 2 naming --shard, and mints nothing."""
        cli, _ = fleet(simulator, tmp_path, 2)
        simulator.clear_requests()
        done = cli.run("rotate", "--shard", shard)
        assert done.returncode == 2
        assert "--shard" in done.stderr.splitlines()[-1]
        assert "Traceback" not in done.stderr
        assert [r for r in simulator.requests() if r["method"] != "GET"] == []

    def test_names_and_shard_together_are_refused(self, simulator: Any, tmp_path: Path) -> None:
        """Account names and --shard conflict: exit 2, one line."""
        cli, ids = fleet(simulator, tmp_path, 2)
        done = cli.run("rotate", next(iter(ids)), "--shard", "0/2")
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith("rotator: error: give account")


class TestWindow:
    POLICY = 'rotate_after = "1d"\nwindow = "Mon-Fri 02:00-05:00"'

    def test_outside_waits_inside_rotates(self, simulator: Any, tmp_path: Path) -> None:
        """A due token is left alone on a Saturday, rotated on Monday 02:30; status names Monday."""
        cli, ids = fleet(simulator, tmp_path, 1, self.POLICY, adopt=True)
        [(user, old_id)] = ids.items()
        simulator.clear_requests()
        saturday = cli.run("rotate", user, "--json", env=cli.env(ROTATOR_NOW=SAT))
        assert saturday.returncode == 0, saturday.stderr
        [result] = json_lines(saturday.stdout)
        assert result["result"] == "not_due" and "waiting for the window" in result["message"]
        assert simulator.live_token_ids(user) == {old_id}
        assert [r for r in simulator.requests() if r["method"] != "GET"] == []
        status = cli.run("status", "--json", env=cli.env(ROTATOR_NOW=SAT))
        [doc] = json_lines(status.stdout)
        assert doc["next_due_at"] == "2030-01-07T02:00:00+00:00" and doc["due"] is False
        monday = cli.run("rotate", user, "--json", env=cli.env(ROTATOR_NOW=MON_0230))
        assert monday.returncode == 0, monday.stderr
        [result] = json_lines(monday.stdout)
        assert result["result"] == "completed"
        assert simulator.live_token_ids(user) == {result["new_token_id"]}

    def test_force_ignores_the_window(self, simulator: Any, tmp_path: Path) -> None:
        """--force rotates on a Saturday."""
        cli, ids = fleet(simulator, tmp_path, 1, self.POLICY, adopt=True)
        [(user, old_id)] = ids.items()
        done = cli.run("rotate", user, "--force", "--json", env=cli.env(ROTATOR_NOW=SAT))
        assert json_lines(done.stdout)[0]["result"] == "completed", done.stderr
        assert old_id not in simulator.live_token_ids(user)

    def test_owed_revoke_is_not_held_back(self, simulator: Any, tmp_path: Path) -> None:
        """A run started in the window revokes after its grace even though that is outside it."""
        policy = 'rotate_after = "1d"\nwindow = "Mon 02:00-03:00"\nrevoke_grace = "1h"'
        cli, ids = fleet(simulator, tmp_path, 1, policy, adopt=True)
        [(user, old_id)] = ids.items()
        first = cli.run("rotate", user, "--json", env=cli.env(ROTATOR_NOW=MON_0230))
        [result] = json_lines(first.stdout)
        assert result["result"] == "awaiting_revoke", first.stderr
        assert old_id in simulator.live_token_ids(user)
        later = cli.run("rotate", user, "--json", env=cli.env(ROTATOR_NOW="2030-01-07T04:00:00+00:00"))
        assert json_lines(later.stdout)[0]["result"] == "completed", later.stderr
        assert simulator.live_token_ids(user) == {result["new_token_id"]}


class TestPrune:
    DAYS = ("2030-01-01", "2030-01-05", "2030-01-20")

    def rotate_on_days(self, cli: CliSetup, user: str) -> list[str]:
        run_ids = []
        for day in self.DAYS:
            done = cli.run(
                "rotate", user, "--force", "--json", env=cli.env(ROTATOR_NOW=f"{day}T12:00:00+00:00")
            )
            assert done.returncode == 0, done.stderr
            run_ids.append(json_lines(done.stdout)[0]["run_id"])
        return run_ids

    def run_files(self, cli: CliSetup) -> set[str]:
        return {p.stem for p in (cli.state_dir / "runs").glob("*.json")}

    def test_dry_run_then_prune(self, simulator: Any, tmp_path: Path) -> None:
        """--dry-run lists the two old runs and removes nothing; prune removes exactly them."""
        cli, ids = fleet(simulator, tmp_path, 1, adopt=True)
        [user] = ids
        adopt_runs = self.run_files(cli)
        old1, old2, new = self.rotate_on_days(cli, user)
        set_state(cli, 'keep_runs = "10d"')
        env = cli.env(ROTATOR_NOW="2030-01-21T00:00:00+00:00")
        dry = cli.run("state", "prune", "--dry-run", "--json", env=env)
        assert dry.returncode == 0, dry.stderr
        listed = {d["run_id"] for d in json_lines(dry.stdout)}
        assert listed == {old1, old2} | adopt_runs
        assert {d["action"] for d in json_lines(dry.stdout)} == {"would_remove"}
        assert self.run_files(cli) == {old1, old2, new} | adopt_runs
        done = cli.run("state", "prune", env=env)
        assert done.returncode == 0, done.stderr
        assert self.run_files(cli) == {new}
        assert cli.account_doc(user)["runs"] == [new]  # type: ignore[index]
        history = cli.run("history", user, "--json")
        assert [d["run_id"] for d in json_lines(history.stdout)] == [new]

    def test_not_configured_is_a_usage_error(self, simulator: Any, tmp_path: Path) -> None:
        """Without keep_runs (or --keep), prune exits 2 naming state.keep_runs."""
        cli, _ = fleet(simulator, tmp_path, 1)
        done = cli.run("state", "prune")
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith("rotator: error: state.keep_runs")

    def test_rotate_prunes_after_the_pass(self, simulator: Any, tmp_path: Path) -> None:
        """With keep_runs = 1, a rotate pass leaves only the account's newest run behind."""
        cli, ids = fleet(simulator, tmp_path, 1, adopt=True)
        [user] = ids
        self.rotate_on_days(cli, user)
        set_state(cli, "keep_runs = 1")
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        latest = json_lines(done.stdout)[0]["run_id"]
        assert self.run_files(cli) == {latest}
        assert cli.account_doc(user)["runs"] == [latest]  # type: ignore[index]


class TestPruneDynamoDB:
    def test_prune_deletes_items(self, simulator: Any, aws: Any, tmp_path: Path) -> None:
        """On the DynamoDB store, prune deletes the old run items and keeps the newest."""
        table = f"rotator-{unique_username()}"
        create_table(table, region=aws.region, endpoint_url=aws.endpoint_url)
        cli, ids = fleet(simulator, tmp_path, 1)
        [user] = ids
        text = cli.config_path.read_text().replace(
            'path = "state"',
            f'store = "dynamodb"\ntable = "{table}"\nregion = "{aws.region}"\n'
            f'endpoint_url = "{aws.endpoint_url}"',
        )
        cli.config_path.write_text(text)
        cli.extra_env.update(aws.env)
        assert cli.run("adopt", user, "--token-id", ids[user]).returncode == 0
        old1, old2, new = TestPrune().rotate_on_days(cli, user)
        env = cli.env(ROTATOR_NOW="2030-01-21T00:00:00+00:00")
        done = cli.run("state", "prune", "--keep", "10d", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert {old1, old2} <= {d["run_id"] for d in json_lines(done.stdout)}
        store = DynamoDBStore(table, region=aws.region, endpoint_url=aws.endpoint_url)
        assert {d["run_id"] for d in store.list_runs()} == {new}
        assert store.load_account(user)["runs"] == [new]  # type: ignore[index]


class TestProgress:
    def test_json_logs_carry_fleet_progress(self, simulator: Any, tmp_path: Path) -> None:
        """With JSON logs, stderr gets fleet.progress (done == total at the end); stdout stays JSON."""
        cli, ids = fleet(simulator, tmp_path, 3, files=False)
        done = cli.run("rotate", "--all", "--json")
        assert done.returncode == 0, done.stderr
        outcomes = [line for line in done.stdout.splitlines() if line.strip()]
        assert len(json_lines(done.stdout)) == len(outcomes) == 3
        progress = [e for e in json_lines(done.stderr) if e.get("event") == "fleet.progress"]
        assert progress, done.stderr
        last = progress[-1]
        assert (last["done"], last["total"], last["failed"]) == (3, 3, 0)
        assert last["slowest_account"] in ids

    def test_terminal_line_on_stderr(self, simulator: Any, tmp_path: Path) -> None:
        """On a terminal, stderr shows 'N/N done, F failed, slowest ...'; stdout has only the table."""
        cli, ids = fleet(simulator, tmp_path, 3, files=False)
        argv = [a for a in cli.argv("rotate", "--all") if a not in ("--log-format", "json")]
        code, stdout, err = run_with_terminal_stderr(argv, env=cli.env(), cwd=cli.root)
        assert code == 0, stdout + err
        assert "3/3 done, 0 failed" in err and "slowest" in err
        assert "done," not in stdout and "\r" not in stdout
        # The table wraps long cells onto continuation lines (indented): one row per account.
        rows = [line.split()[0] for line in stdout.splitlines()[1:] if line[:1].strip()]
        assert sorted(rows) == sorted(ids)
