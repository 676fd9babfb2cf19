"""Signals and dying readers against a real `rotator` process and the simulator over HTTP.

SIGINT and SIGTERM stop a run at the next step boundary (the call in flight finishes),
start nothing new, print every account, and exit 3; the next `rotator rotate` finishes
the job. A reader of stdout or stderr that goes away never stops a run. The process is
held mid-run by a `delay` fault on one simulator route, never by a sleep in the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import wait_until
from tests.support.rotator_cli import CliSetup, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username

CHECKED = 'checks = ["readback", "simulator"]'


def fleet(
    sim: Any, tmp_path: Path, n: int, policy: str = ""
) -> tuple[CliSetup, list[str], dict[str, tuple[str, str]]]:
    """`n` adopted accounts, each with a file backend holding its first token."""
    users = [unique_username() for _ in range(n)]
    old = {u: sim.seed(u, token_name="initial") for u in users}
    cli = CliSetup(tmp_path, sim.url, sim.admin_token, users, policy=policy).write()
    for user, (secret, token_id) in old.items():
        seed_file(cli.secret_file(user), secret, token_id)
        done = cli.run("adopt", user, "--token-id", token_id)
        assert done.returncode == 0, done.stderr
    return cli, users, old


def run_state(cli: CliSetup, user: str) -> str | None:
    runs = [r for r in cli.runs() if r["account"].lower() == user.lower()]
    return runs[0]["state"] if len(runs) == 1 else None


def stop_when(
    proc: subprocess.Popen[str], ready: Any, signum: int, what: str
) -> tuple[int, str, str]:
    """Wait (with a deadline) until `ready()`, send `signum`, collect exit status and output."""
    try:
        wait_until(lambda: proc.poll() is None and ready(), timeout=60, what=what)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


class TestStopAtStepBoundary:
    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    def test_signal_during_verify_stops_before_promote(
        self, simulator: Any, tmp_path: Path, signum: int
    ) -> None:
        """A signal while the check runs: the check finishes, nothing is promoted, exit 3, resumable."""
        cli, [user], old = fleet(simulator, tmp_path, 1, CHECKED)
        old_secret, old_id = old[user]
        simulator.add_fault(route="whoami", action="delay", seconds=2, times=1)
        proc = cli.start("rotate", user, "--force", "--json")
        code, out, err = stop_when(  # the check is in flight: its delayed whoami has begun
            proc,
            lambda: run_state(cli, user) == "verifying" and simulator.faults()[0]["fired"] == 1,
            signum,
            "the run to verify",
        )
        assert code == 3, (out, err)
        [doc] = json_lines(out)
        assert doc["result"] == "interrupted" and doc["state"] == "verified", doc
        assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
        # The check that was in flight finished; the promote and the revoke did not start.
        assert [f["fired"] for f in simulator.faults()] == [1]
        assert read_secret(cli.secret_file(user))["token_id"] == old_id
        assert simulator.live_token_ids(user) == {old_id, doc["new_token_id"]}
        assert simulator.whoami(old_secret) == user
        # The next rotate resumes from there: promote, revoke, one live token, served.
        again = cli.run("rotate", user, "--json")
        assert again.returncode == 0, again.stderr
        [done] = json_lines(again.stdout)
        assert done["result"] == "completed" and done["new_token_id"] == doc["new_token_id"]
        assert simulator.live_token_ids(user) == {doc["new_token_id"]}
        assert read_secret(cli.secret_file(user))["token_id"] == doc["new_token_id"]

    def test_sigterm_in_a_fleet_reports_every_account(self, simulator: Any, tmp_path: Path) -> None:
        """SIGTERM mid-fleet: the running account stops at a boundary, the rest are not_started."""
        cli, users, old = fleet(simulator, tmp_path, 3)
        first = users[0]
        simulator.add_fault(route="create_token", action="delay", seconds=2, username=first)
        simulator.clear_requests()
        proc = cli.start("rotate", "--all", "--force", "--concurrency", "1", "--json")
        code, out, err = stop_when(
            proc, lambda: run_state(cli, first) == "creating", signal.SIGTERM, "the first create"
        )
        assert code == 3, (out, err)
        docs = {d["account"]: d for d in json_lines(out)}
        assert set(docs) == set(users)
        assert docs[first]["result"] == "interrupted" and docs[first]["state"] == "created"
        for user in users[1:]:
            assert docs[user]["result"] == "not_started", docs[user]
            # Nothing was started for them: no run, no token, the file untouched.
            assert simulator.live_token_ids(user) == {old[user][1]}
            assert read_secret(cli.secret_file(user))["token_id"] == old[user][1]
            assert run_state(cli, user) is None
        creates = [r for r in simulator.requests() if r["route"] == "create_token"]
        assert len(creates) == 1  # only the first account's, which finished
        assert read_secret(cli.secret_file(first))["token_id"] == old[first][1]
        # The next pass finishes everyone; each account ends with exactly one live token.
        simulator.clear_faults()
        again = cli.run("rotate", "--all", "--force", "--json")
        assert again.returncode == 0, again.stderr
        for doc in json_lines(again.stdout):
            assert doc["result"] == "completed", doc
            assert simulator.live_token_ids(doc["account"]) == {doc["new_token_id"]}
            assert read_secret(cli.secret_file(doc["account"]))["token_id"] == doc["new_token_id"]

    def test_table_lists_every_account_after_sigint(self, simulator: Any, tmp_path: Path) -> None:
        """Without --json the table has one row per account, each within 80 columns."""
        cli, users, _ = fleet(simulator, tmp_path, 2)
        simulator.add_fault(route="create_token", action="delay", seconds=2, username=users[0])
        proc = cli.start("rotate", "--all", "--force", "--concurrency", "1")
        code, out, err = stop_when(
            proc, lambda: run_state(cli, users[0]) == "creating", signal.SIGINT, "the first create"
        )
        assert code == 3, (out, err)
        lines = out.splitlines()
        assert lines[0].split()[:2] == ["ACCOUNT", "RESULT"]
        assert all(len(line) <= 80 for line in lines), lines
        assert any(users[0] in line and "interrupted" in line for line in lines)
        assert any(users[1] in line and "not_started" in line for line in lines)


class TestCtrlCAtATerminal:
    def test_sigint_to_the_process_group_spares_a_running_hook(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """Ctrl-C reaches the whole foreground group: the hook still finishes, no rollback."""
        marker = tmp_path / "hook-started"
        hook = (
            "[defaults.hooks.after_store]\n"
            f'command = ["sh", "-c", "touch {marker}; sleep 2"]\n'
            'timeout = "60s"'
        )
        cli, [user], old = fleet(simulator, tmp_path, 1, hook)
        proc = subprocess.Popen(
            cli.argv("rotate", user, "--force", "--json"),
            env=cli.env(),
            cwd=cli.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group, as a shell gives a foreground job
        )
        try:
            wait_until(marker.exists, timeout=60, what="the hook to start")
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 3, (out, err)
        [doc] = json_lines(out)
        assert doc["result"] == "interrupted" and doc["state"] == "verifying", doc
        assert simulator.live_token_ids(user) == {old[user][1], doc["new_token_id"]}
        again = cli.run("rotate", user, "--json")
        assert again.returncode == 0, again.stderr
        assert json_lines(again.stdout)[0]["result"] == "completed"
        assert simulator.live_token_ids(user) == {doc["new_token_id"]}


class TestReadersThatGoAway:
    def test_closed_stdout_and_stderr_do_not_stop_a_run(self, simulator: Any, tmp_path: Path) -> None:
        """Both pipes closed before the first write: the rotation still completes, exit 0."""
        cli, [user], old = fleet(simulator, tmp_path, 1, CHECKED)
        proc = subprocess.Popen(
            cli.argv("--log-level", "debug", "rotate", user, "--force"),
            env=cli.env(),
            cwd=cli.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
        assert proc.wait(timeout=120) == 0
        stored = read_secret(cli.secret_file(user))
        assert stored["token_id"] != old[user][1]
        assert simulator.live_token_ids(user) == {stored["token_id"]}
        assert simulator.whoami(stored["motherduck_token"]) == user

    def test_pipe_into_head(self, simulator: Any, tmp_path: Path) -> None:
        """`rotator ... 2>&1 | head -n 1`: rotator's own status is 0 and the rotation is done."""
        cli, users, old = fleet(simulator, tmp_path, 2)
        argv = " ".join(cli.argv("--log-level", "debug", "rotate", "--all", "--force"))
        done = subprocess.run(
            ["bash", "-c", f'{argv} 2>&1 | head -n 1 >/dev/null; exit "${{PIPESTATUS[0]}}"'],
            env=cli.env(),
            cwd=cli.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for user in users:
            stored = read_secret(cli.secret_file(user))
            assert stored["token_id"] != old[user][1]
            assert simulator.live_token_ids(user) == {stored["token_id"]}


    def test_cron_wrapper_with_a_dying_logger(self, simulator: Any, tmp_path: Path) -> None:
        """examples/cron/rotator-cron.sh whose `logger` exits at once: rotations done, exit 0."""
        if os.geteuid() != 0:
            pytest.skip("the wrapper insists on a root-owned admin-token file")
        cli, users, old = fleet(simulator, tmp_path, 2)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        rotator_bin = bin_dir / "rotator"
        rotator_bin.write_text(f'#!/bin/sh\nexec {sys.executable} -m rotator.cli "$@"\n')
        dying_logger = bin_dir / "logger"
        dying_logger.write_text("#!/bin/sh\nexit 1\n")  # reads nothing, gone at once
        for script in (rotator_bin, dying_logger):
            script.chmod(0o755)
        token_file = tmp_path / "admin-token"
        token_file.write_text(simulator.admin_token + "\n")
        token_file.chmod(0o600)
        env = {
            **cli.env(),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "ROTATOR_BIN": str(rotator_bin),
            "ROTATOR_TOKEN_FILE": str(token_file),
            "ROTATOR_ENV_FILE": str(tmp_path / "absent.env"),
            # 40 days on: every account is due under the default rotate_after (30d).
            "ROTATOR_NOW": (datetime.now(UTC) + timedelta(days=40)).isoformat(),
        }
        wrapper = Path(__file__).resolve().parents[2] / "examples" / "cron" / "rotator-cron.sh"
        done = subprocess.run(
            ["bash", str(wrapper)], env=env, cwd=cli.root, capture_output=True, text=True,
            timeout=120, check=False,
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
        for user in users:
            stored = read_secret(cli.secret_file(user))
            assert stored["token_id"] != old[user][1]
            assert simulator.live_token_ids(user) == {stored["token_id"]}


class TestReadOnlyCommands:
    def test_sigterm_stops_a_read_at_once(self, simulator: Any, tmp_path: Path) -> None:
        """`tokens` waiting on a slow MotherDuck: SIGTERM ends it with 143 and one line, no traceback."""
        cli, [user], _ = fleet(simulator, tmp_path, 1)
        simulator.add_fault(route="list_tokens", action="delay", seconds=5, username=user)
        simulator.clear_requests()
        proc = cli.start("tokens", user)

        def asked() -> bool:
            return any(f["fired"] for f in simulator.faults())

        code, out, err = stop_when(proc, asked, signal.SIGTERM, "the token listing")
        assert code == 128 + signal.SIGTERM, (out, err)
        assert "stopped by SIGTERM" in err and "Traceback" not in err

