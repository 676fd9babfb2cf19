"""One table of exit statuses, for one account or many, against real `rotator` processes.

A bad admin token is found the day it breaks (one cheap admin call, even with nothing
due), usage and credential errors are 2 with `--all` too, global options work after the
command, and `config validate` refuses policies that would rotate on every run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.rotator_cli import CliSetup, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username


def adopted(sim: Any, tmp_path: Path, n: int = 2, **kw: Any) -> tuple[CliSetup, list[str]]:
    users = [unique_username() for _ in range(n)]
    cli = CliSetup(tmp_path, sim.url, sim.admin_token, users, **kw).write()
    for user in users:
        secret, token_id = sim.seed(user, token_name="initial")
        seed_file(cli.secret_file(user), secret, token_id)
        assert cli.run("adopt", user, "--token-id", token_id).returncode == 0
    return cli, users


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]


def mutations(sim: Any) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["method"] != "GET"]


class TestAdminTokenProbe:
    @pytest.mark.parametrize("selection", [["--all"], ["ONE"]])
    def test_garbage_admin_token_with_nothing_due(
        self, simulator: Any, tmp_path: Path, selection: list[str]
    ) -> None:
        """Nothing is due, the admin token is garbage: exit 2 today, one line, nothing changed."""
        cli, users = adopted(simulator, tmp_path)
        args = [users[0] if a == "ONE" else a for a in selection]
        assert cli.run("rotate", *args).returncode == 0  # healthy: not due, exit 0
        simulator.clear_requests()
        done = cli.run("rotate", *args, "--json", env=cli.env(TEST_MD_ADMIN="garbage"))
        assert done.returncode == 2, (done.stdout, done.stderr)
        [line] = error_lines(done.stderr)
        assert line.startswith("rotator: error: ") and "admin token was rejected" in line
        assert "Traceback" not in done.stderr and done.stdout == ""
        asked = [r["route"] for r in simulator.requests()]
        assert asked == ["active_accounts"] and mutations(simulator) == []

    def test_probe_is_one_cheap_call_when_healthy(self, simulator: Any, tmp_path: Path) -> None:
        """With a good token and nothing due, the only MotherDuck call is the admin probe."""
        cli, _ = adopted(simulator, tmp_path)
        simulator.clear_requests()
        done = cli.run("rotate", "--all", "--json")
        assert done.returncode == 0, done.stderr
        assert {d["result"] for d in json_lines(done.stdout)} == {"not_due"}
        assert [r["route"] for r in simulator.requests()] == ["active_accounts"]

    def test_dry_run_checks_too(self, simulator: Any, tmp_path: Path) -> None:
        """--dry-run reads only, and a rejected admin token is still exit 2."""
        cli, _ = adopted(simulator, tmp_path)
        done = cli.run("rotate", "--all", "--dry-run", env=cli.env(TEST_MD_ADMIN="garbage"))
        assert done.returncode == 2 and "admin token was rejected" in done.stderr


class TestSameCodesForOneOrMany:
    def test_missing_admin_token_env(self, simulator: Any, tmp_path: Path) -> None:
        """An unset admin token variable is 2 for one account and for --all."""
        cli, users = adopted(simulator, tmp_path)
        env = cli.env()
        del env["TEST_MD_ADMIN"]
        for args in ([users[0]], ["--all"]):
            done = cli.run("rotate", *args, "--force", env=env)
            assert done.returncode == 2, (args, done.stderr)
            assert "TEST_MD_ADMIN" in done.stderr and "Traceback" not in done.stderr

    def test_user_unknown_to_motherduck(self, simulator: Any, tmp_path: Path) -> None:
        """A configured account MotherDuck does not know: 2 alone, 2 among others with --all."""
        cli, [known] = adopted(simulator, tmp_path, n=1)
        ghost = unique_username("ghost")
        cli.accounts.append(ghost)
        cli.write()
        old_id = read_secret(cli.secret_file(known))["token_id"]
        alone = cli.run("rotate", ghost, "--force")
        assert alone.returncode == 2, alone.stderr
        many = cli.run("rotate", "--all", "--force", "--json")
        assert many.returncode == 2, many.stderr
        docs = {d["account"]: d for d in json_lines(many.stdout)}
        assert docs[known]["result"] == "completed"  # the others go on
        assert docs[ghost]["result"] == "error" and ghost in docs[ghost]["message"]
        assert simulator.live_token_ids(known) == {docs[known]["new_token_id"]} != {old_id}

    def test_missing_vault_token(self, simulator: Any, tmp_path: Path) -> None:
        """A Vault backend without VAULT_TOKEN is a credential error: 2, alone or with --all."""
        users = [unique_username() for _ in range(2)]
        for user in users:
            simulator.seed(user, token_name="initial")
        vault = 'type = "vault"\nurl = "http://127.0.0.1:9"\npath = "md/{user}"'
        tables = {
            u: [f'type = "file"\npath = "secrets/{u}.json"', vault.format(user=u)] for u in users
        }
        cli = CliSetup(tmp_path, simulator.url, simulator.admin_token, users, backend_tables=tables)
        cli.write()
        env = cli.env()
        env.pop("VAULT_TOKEN", None)
        simulator.clear_requests()
        for args in ([users[0]], ["--all"]):
            done = cli.run("rotate", *args, "--force", env=env)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert "VAULT_TOKEN" in done.stdout + done.stderr and "Traceback" not in done.stderr
        assert mutations(simulator) == []


class TestGlobalOptionsAnywhere:
    def test_config_and_log_options_after_the_command(self, simulator: Any, tmp_path: Path) -> None:
        """`rotator rotate U --config c.toml --log-format json --log-level warning` works."""
        cli, [user] = adopted(simulator, tmp_path, n=1)
        env = cli.env()
        del env["ROTATOR_CONFIG"]
        done = cli.run(
            "rotate", user, "--config", str(cli.config_path), "--log-level", "warning", "--json",
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert json_lines(done.stdout)[0]["result"] == "not_due"
        assert '"level": "info"' not in done.stderr  # --log-level after the command applied
        checked = cli.run("config", "validate", "--config", str(cli.config_path), env=env)
        assert checked.returncode == 0 and "ok" in checked.stdout, checked.stderr


class TestConfigValidate:
    @pytest.mark.parametrize(
        ("defaults", "expect"),
        [
            ('ttl = "1d"\nrotate_before_expiry = "7d"', "must exceed rotate_before_expiry"),
            ('ttl = "1d"\nrotate_before_expiry = "12h"', "by at least 1d"),
            ('revoke_grace = "99999999999999d"', "longer than 3650d"),
            ('revoke_grace = "999999999d"', "longer than 3650d"),
            ('rotate_aftr = "10d"', "did you mean 'rotate_after'?"),
        ],
    )
    def test_refused_once_with_the_reason(
        self, simulator: Any, tmp_path: Path, defaults: str, expect: str
    ) -> None:
        """Each bad [defaults] line is one problem (not one per account), exit 2, no traceback."""
        users = [unique_username() for _ in range(3)]
        cli = CliSetup(tmp_path, simulator.url, simulator.admin_token, users, policy=defaults)
        cli.write()
        done = cli.run("config", "validate")
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        problems = done.stdout.splitlines()
        assert len(problems) == 1 and problems[0].startswith("defaults."), problems
        assert expect in problems[0]
        rotate = cli.run("rotate", "--all")
        assert rotate.returncode == 2 and expect in rotate.stderr

    def test_a_sane_ttl_policy_passes(self, simulator: Any, tmp_path: Path) -> None:
        """ttl 90d with rotate_before_expiry 7d, and a short rotate_after, are fine."""
        cli = CliSetup(
            tmp_path, simulator.url, simulator.admin_token, [unique_username()],
            policy='ttl = "90d"\nrotate_before_expiry = "7d"\nrotate_after = "1h"',
        ).write()
        done = cli.run("config", "validate")
        assert done.returncode == 0, done.stdout + done.stderr


class TestTablesFit80Columns:
    def test_rotate_status_history_tokens(self, simulator: Any, tmp_path: Path) -> None:
        """Every table a person reads fits 80 columns and shows times as 2026-...T..:..:..Z."""
        cli, [user] = adopted(simulator, tmp_path, n=1, policy='revoke_grace = "1h"')
        outputs = {}
        for args in (
            ["rotate", user, "--force"],
            ["status"],
            ["history", user],
            ["tokens", user],
        ):
            done = cli.run(*args)
            assert done.returncode == 0, (args, done.stderr)
            outputs[args[0]] = done.stdout
        for name, text in outputs.items():
            assert all(len(line) <= 80 for line in text.splitlines()), (name, text)
        assert "running awaiting_revoke; revoke at" in " ".join(outputs["status"].split())
        for name in ("status", "history", "tokens"):
            assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", outputs[name]), (name, outputs)
            assert "+00:00" not in outputs[name]
        assert all(token["id"] in outputs["tokens"] for token in simulator.tokens(user))
