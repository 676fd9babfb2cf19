"""Checks and hooks as a user configures them: real subprocesses, a real local HTTP server,
the simulator's data plane, and the file backend a consumer reads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotator.errors import CheckFailed
from rotator.secret import Secret
from rotator.verify.checks import CheckContext, CommandCheck, HttpCheck
from tests.support.rotator_cli import CliSetup, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username

PY = sys.executable


def account(
    sim: Any, tmp_path: Path, policy: str, files: int = 1
) -> tuple[CliSetup, str, str, str]:
    user = unique_username()
    old_secret, old_id = sim.seed(user)
    tables = [f'type = "file"\npath = "secrets/{user}-b{i}.json"' for i in range(files)]
    cli = CliSetup(
        tmp_path, sim.url, sim.admin_token, [user], backend_tables={user: tables}, policy=policy
    ).write()
    for i in range(files):
        seed_file(tmp_path / "secrets" / f"{user}-b{i}.json", old_secret, old_id)
    assert cli.run("adopt", user, "--token-id", old_id).returncode == 0
    return cli, user, old_secret, old_id


def toml_list(argv: list[str]) -> str:
    return json.dumps(argv)


class Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []
    status = 204

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization", ""))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


class TestChecks:
    def test_command_check_gets_token_in_env_not_argv(self, tmp_path: Path) -> None:
        """The command sees MOTHERDUCK_TOKEN in its environment and nowhere on its command line."""
        out = tmp_path / "seen.json"
        script = f"import json,os,sys; json.dump({{'argv': sys.argv, 'token': os.environ['MOTHERDUCK_TOKEN']}}, open({str(out)!r}, 'w'))"
        CommandCheck([PY, "-c", script]).run(
            CheckContext("svc_a", "file:x", Secret("eyJ.secret.value"), "t1")
        )
        seen = json.loads(out.read_text())
        assert seen["token"] == "eyJ.secret.value"
        assert not any("eyJ.secret" in arg for arg in seen["argv"])

    def test_command_check_failure_is_redacted(self) -> None:
        """A failing command's output is in the error with the token masked."""
        ctx = CheckContext("svc_a", "file:x", Secret("eyJtopsecret.a.b"), "t1")
        with pytest.raises(CheckFailed) as info:
            CommandCheck(
                [
                    PY,
                    "-c",
                    "import os; print('bad', os.environ['MOTHERDUCK_TOKEN']); raise SystemExit(3)",
                ]
            ).run(ctx)
        assert "exited 3" in str(info.value) and "***" in str(info.value)
        assert "topsecret" not in str(info.value)

    def test_command_check_timeout(self) -> None:
        """A command that outlives its timeout fails the check, naming the timeout."""
        with pytest.raises(CheckFailed, match="timed out"):
            CommandCheck([PY, "-c", "import time; time.sleep(30)"], timeout=0.5).run(
                CheckContext("svc_a", "file:x", Secret("eyJ.a.b"), None)
            )

    def test_http_check_sends_bearer(self, http_server: str) -> None:
        """The http check sends the token as a Bearer header and compares the status."""
        HttpCheck(http_server, expect_status=204).run(
            CheckContext("svc_a", "file:x", Secret("eyJ.h.c"), None)
        )
        assert Recorder.seen == ["Bearer eyJ.h.c"]
        Recorder.status = 500
        try:
            with pytest.raises(CheckFailed, match="answered 500, expected 204"):
                HttpCheck(http_server, expect_status=204).run(
                    CheckContext("svc_a", "file:x", Secret("eyJ.h.c"), None)
                )
        finally:
            Recorder.status = 204

    def test_rotation_with_http_and_simulator_checks(
        self, simulator: Any, tmp_path: Path, http_server: str
    ) -> None:
        """Configured http + simulator checks see the new token, as read back from the file."""
        policy = f'checks = ["readback", "simulator", {{type = "http", url = "{http_server}", expect_status = 204}}]'
        cli, user, _, _ = account(simulator, tmp_path, policy)
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        new = read_secret(tmp_path / "secrets" / f"{user}-b0.json")
        assert Recorder.seen == [f"Bearer {new['motherduck_token']}"]

    def test_confirm_revoked(self, simulator: Any, tmp_path: Path) -> None:
        """confirm_revoked: after revoke the old id is unlisted and the old token fails the check."""
        cli, user, old_secret, old_id = account(
            simulator, tmp_path, 'checks = ["readback", "simulator"]\nconfirm_revoked = true'
        )
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        assert "token.revoke_confirmed" in done.stderr
        assert old_id not in simulator.live_token_ids(user)
        assert simulator.whoami(old_secret) is None

    def test_confirm_revoked_refuses_a_check_that_still_passes(
        self, simulator: Any, tmp_path: Path, http_server: str
    ) -> None:
        """If the old token still passes a check after revoke, the run does not call it done."""
        policy = f'checks = ["readback", {{type = "http", url = "{http_server}", expect_status = 204}}]\nconfirm_revoked = true'
        cli, user, _, _ = account(simulator, tmp_path, policy)
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 3
        assert "still passes the http check" in json_lines(done.stdout)[0]["message"]

    def test_check_failing_on_one_backend_rolls_everything_back(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A check that fails only on the second backend's copy restores both backends."""
        fail_on_b1 = [
            PY,
            "-c",
            "import os,sys; sys.exit(1 if os.environ['ROTATOR_BACKEND'].endswith('b1.json') else 0)",
        ]
        policy = f'checks = ["readback", {{type = "command", command = {toml_list(fail_on_b1)}}}]'
        cli, user, old_secret, old_id = account(simulator, tmp_path, policy, files=2)
        before = [(tmp_path / "secrets" / f"{user}-b{i}.json").read_bytes() for i in range(2)]
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 1
        [result] = json_lines(done.stdout)
        assert result["state"] == "rolled_back" and "b1.json" in result["message"]
        after = [(tmp_path / "secrets" / f"{user}-b{i}.json").read_bytes() for i in range(2)]
        assert after == before
        assert simulator.live_token_ids(user) == {old_id}
        assert simulator.whoami(old_secret) == user

    def test_check_attempts_retry_until_pass(self, simulator: Any, tmp_path: Path) -> None:
        """attempts/interval retry a check that passes on its third try (eventual consistency)."""
        counter = tmp_path / "count"
        script = f"import pathlib,sys; p=pathlib.Path({str(counter)!r}); n=int(p.read_text()) if p.exists() else 0; p.write_text(str(n+1)); sys.exit(0 if n >= 2 else 1)"
        policy = f'checks = ["readback", {{type = "command", command = {toml_list([PY, "-c", script])}, attempts = 3, interval = "0s"}}]'
        cli, user, _, _ = account(simulator, tmp_path, policy)
        done = cli.run("rotate", user, "--force")
        assert done.returncode == 0, done.stderr
        assert counter.read_text() == "3"


class TestHooks:
    def hook(
        self, tmp_path: Path, name: str, point: str, extra: str = "", exit_code: int = 0
    ) -> str:
        out = tmp_path / f"{name}.json"
        script = f"import json,os,sys; json.dump({{k: v for k, v in os.environ.items() if k.startswith(('ROTATOR_', 'MOTHERDUCK_TOKEN'))}}, open({str(out)!r}, 'w')); sys.exit({exit_code})"
        return f"[defaults.hooks.{point}]\ncommand = {toml_list([PY, '-c', script])}\n{extra}\n"

    def test_hooks_get_ids_not_the_secret(self, simulator: Any, tmp_path: Path) -> None:
        """after_store/after_promote/after_revoke run with account, run and token ids; no token."""
        hooks = "".join(
            self.hook(tmp_path, p, p) for p in ("after_store", "after_promote", "after_revoke")
        )
        cli, user, _, old_id = account(simulator, tmp_path, hooks)
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        [result] = json_lines(done.stdout)
        for point in ("after_store", "after_promote", "after_revoke"):
            env = json.loads((tmp_path / f"{point}.json").read_text())
            assert env["ROTATOR_HOOK"] == point
            assert env["ROTATOR_ACCOUNT"] == user
            assert env["ROTATOR_RUN_ID"] == result["run_id"]
            assert env["ROTATOR_OLD_TOKEN_ID"] == old_id
            assert env["ROTATOR_NEW_TOKEN_ID"] == result["new_token_id"]
            assert "MOTHERDUCK_TOKEN" not in env

    def test_pass_token_opt_in(self, simulator: Any, tmp_path: Path) -> None:
        """pass_token = true gives the hook the new token in MOTHERDUCK_TOKEN."""
        policy = self.hook(tmp_path, "promote", "after_promote", "pass_token = true")
        cli, user, _, _ = account(simulator, tmp_path, policy)
        assert cli.run("rotate", user, "--force").returncode == 0
        env = json.loads((tmp_path / "promote.json").read_text())
        assert (
            env["MOTHERDUCK_TOKEN"]
            == read_secret(tmp_path / "secrets" / f"{user}-b0.json")["motherduck_token"]
        )

    def test_failing_hook_rolls_back_and_on_failure_runs(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A failing after_promote hook (on_error=rollback) restores the old token; on_failure runs."""
        policy = self.hook(tmp_path, "promote", "after_promote", exit_code=7) + self.hook(
            tmp_path, "failure", "on_failure"
        )
        cli, user, _old_secret, old_id = account(simulator, tmp_path, policy)
        before = (tmp_path / "secrets" / f"{user}-b0.json").read_bytes()
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 1
        assert "after_promote hook" in json_lines(done.stdout)[0]["message"]
        assert (tmp_path / "secrets" / f"{user}-b0.json").read_bytes() == before
        assert simulator.live_token_ids(user) == {old_id}
        failure = json.loads((tmp_path / "failure.json").read_text())
        assert (
            failure["ROTATOR_STATE"] == "rolled_back"
            and "after_promote" in failure["ROTATOR_FAILURE"]
        )

    def test_failing_hook_can_only_warn(self, simulator: Any, tmp_path: Path) -> None:
        """on_error = "warn" logs the failed hook and finishes the rotation."""
        policy = self.hook(tmp_path, "store", "after_store", 'on_error = "warn"', exit_code=1)
        cli, user, _, _ = account(simulator, tmp_path, policy)
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        assert json_lines(done.stdout)[0]["state"] == "completed"
        assert "hook.failed" in done.stderr


def test_relative_commands_run_next_to_the_config(simulator: Any, tmp_path: Path) -> None:
    """`./smoke.sh` in a check or hook is found beside the config file, whatever the cwd."""
    script = tmp_path / "smoke.sh"
    script.write_text('#!/bin/sh\necho "$ROTATOR_HOOK$ROTATOR_BACKEND" >> ran.txt\n')
    script.chmod(0o755)
    policy = 'checks = ["readback", {type = "command", command = ["./smoke.sh"]}]\n[defaults.hooks.after_promote]\ncommand = ["./smoke.sh"]\n'
    cli, user, _, _ = account(simulator, tmp_path, policy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        cli.argv("rotate", user, "--force"),
        env=cli.env(),
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "ran.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[1] == "after_promote"
