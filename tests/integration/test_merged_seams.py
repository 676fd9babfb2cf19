"""Where the merged branches meet: real `rotator` processes against the simulator over HTTP.

Each test reproduces one bug found in the quality pass after issues 12-16 were merged:
two features that each worked alone and misbehaved together (signals and lease fencing,
operator commands and fencing, redaction and the 80-column tables, ...). They assert the
outside world: exit statuses, stdout, the simulator's live tokens, what a backend serves.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.procs import wait_until
from tests.support.rotator_cli import CliSetup, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username


def adopted(
    sim: Any, tmp_path: Path, n: int = 1, policy: str = ""
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


def stopped(pid: int) -> bool:
    """The process stopped itself (SIGSTOP at a ROTATOR_PAUSE_AT point)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def later() -> str:
    """A clock pinned past any lease a stalled process holds (`ROTATOR_NOW`)."""
    return (datetime.now(UTC) + timedelta(hours=2)).isoformat()


class TestSignalsAfterATakeover:
    def test_stop_signal_to_a_run_that_lost_its_lease_does_not_claim_it_resumes(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """SIGINT to a stalled run that `abort` took over: lease lost (exit 3), not "resumes".

        The run stalls right after checkpointing `verifying`; a person aborts it once the
        lease has expired (the run is rolled back and its new token revoked). The stalled
        process then gets SIGINT and continues: it must not report the run as interrupted
        and resumable from `verifying`, which is no longer true.
        """
        cli, [user], old = adopted(simulator, tmp_path)
        old_secret, old_id = old[user]
        a = cli.start("rotate", user, "--force", "--json", env=cli.env(
            ROTATOR_PAUSE_AT="state:verifying"
        ))
        try:
            wait_until(lambda: stopped(a.pid), timeout=60, what="run A to stall")
            [run] = [r for r in cli.runs() if r["account"] == user]
            b = cli.run("abort", run["run_id"], "--json", env=cli.env(ROTATOR_NOW=later()))
            assert b.returncode == 0, b.stderr
            assert json_lines(b.stdout)[0]["result"] == "aborted"
            a.send_signal(signal.SIGINT)
        finally:
            a.send_signal(signal.SIGCONT)
        code, out, err = finish(a)
        assert code == 3, (out, err)
        assert "resumes from there" not in out + err, out
        assert "interrupted" not in [d["result"] for d in json_lines(out)]
        assert "taken over" in err and "Traceback" not in err, err
        # The outside world is what the abort left: the old token, live and served.
        assert simulator.live_token_ids(user) == {old_id}
        assert read_secret(cli.secret_file(user))["token_id"] == old_id
        assert simulator.whoami(old_secret) == user


ONE_TIME_FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
OTHER_TIME_FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d")


class TestOneTimeFormatInOperatorMessages:
    def test_abort_refused_during_the_grace_names_the_time_in_the_one_format(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """README: every time rotator prints is `2026-11-29T23:43:16Z`, messages included."""
        cli, [user], old = adopted(simulator, tmp_path, policy='revoke_grace = "1h"')
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        [doc] = json_lines(done.stdout)
        assert doc["result"] == "awaiting_revoke"
        refused = cli.run("abort", doc["run_id"])
        assert refused.returncode == 2, refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert "after the grace (" in line and ONE_TIME_FORMAT.search(line), line
        assert not OTHER_TIME_FORMAT.search(line), line
        assert simulator.live_token_ids(user) == {old[user][1], doc["new_token_id"]}

    def test_lease_held_names_the_expiry_in_the_one_format(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        cli, [user], _ = adopted(simulator, tmp_path)
        a = cli.start("rotate", user, "--force", env=cli.env(ROTATOR_PAUSE_AT="state:creating"))
        try:
            wait_until(lambda: stopped(a.pid), timeout=60, what="run A to stall")
            b = cli.run("rotate", user, "--force")
        finally:
            a.send_signal(signal.SIGCONT)
            finish(a)
        assert b.returncode == 3, b.stderr
        line = b.stderr.strip().splitlines()[-1]
        assert "is being rotated by" in line and ONE_TIME_FORMAT.search(line), line
        assert not OTHER_TIME_FORMAT.search(line), line


class TestLambdaScheduleChecksTheAdminToken:
    def test_a_garbage_admin_token_fails_a_scheduled_noop(
        self, simulator: Any, tmp_path: Path, monkeypatch: Any
    ) -> None:
        """Issue 14's probe reached the CLI only: a Lambda schedule with nothing due
        succeeded hour after hour on a rejected admin token (its EMF listing swallowed the
        401), until the day a token came due."""
        from rotator import aws_lambda
        from rotator.errors import Unauthorized

        cli, [user], old = adopted(simulator, tmp_path)
        monkeypatch.setenv("ROTATOR_CONFIG", str(cli.config_path))
        monkeypatch.setenv("TEST_MD_ADMIN", "garbage-admin-token-0123456789abcdef")
        aws_lambda.reset()
        try:
            try:
                aws_lambda.handler({"source": "rotator.schedule"}, None)
            except Unauthorized:
                pass
            else:
                raise AssertionError("a scheduled invocation succeeded on a rejected admin token")
            monkeypatch.setenv("TEST_MD_ADMIN", simulator.admin_token)
            aws_lambda.reset()
            simulator.clear_requests()
            done = aws_lambda.handler({"source": "rotator.schedule"}, None)
        finally:
            aws_lambda.reset()
        assert [r["result"] for r in done["results"]] == ["not_due"]
        assert "active_accounts" in [r["route"] for r in simulator.requests()]
        assert simulator.live_token_ids(user) == {old[user][1]}


class TestConfigValidateReportsEverything:
    def test_every_new_fields_problem_once_with_no_traceback(self, tmp_path: Path) -> None:
        """`config validate` prints every problem at once (README). A bad [state] or
        [motherduck] value hid everything below it, and a typo in [defaults] hid the rules
        across keys (ttl against rotate_before_expiry, lease_ttl against the settle)."""
        config = tmp_path / "rotator.toml"
        config.write_text(
            "[motherduck]\n"
            'api_url = "http://127.0.0.1:9"\n'
            'create_settle = "20m"\n'
            "[state]\n"
            'keep_runs = "forever"\n'
            "[defaults]\n"
            'ttl = "1d"\n'
            'rotate_before_expiry = "7d"\n'
            'rotate_aftr = "3d"\n'
            'window = "Mon-Fry 02:00-05:00"\n'
            "[[accounts]]\n"
            'username = "svc_a"\n'
            'spread = "400d"\n'
            "  [[accounts.backends]]\n"
            '  type = "file"\n'
            '  path = "a.json"\n'
            "[[accounts]]\n"
            'username = "svc_b"\n'
            "  [[accounts.backends]]\n"
            '  type = "file"\n'
            '  path = "b.json"\n'
        )
        done = subprocess.run(
            [sys.executable, "-m", "rotator.cli", "--config", str(config), "config", "validate"],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        lines = done.stdout.splitlines()
        fields = [line.split(":", 1)[0] for line in lines]
        assert fields == [
            "motherduck.create_settle",
            "state.keep_runs",
            "defaults.window",
            "defaults.rotate_aftr",
            "defaults.ttl",
            "accounts[0].spread",
        ], lines
        assert "did you mean 'rotate_after'" in lines[3]
        assert not (tmp_path / "state").exists() and not (tmp_path / ".rotator-state").exists()


class TestNoTracebackOutsideARun:
    def test_reading_commands_on_a_malformed_account_record_say_one_line(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """`rotate --all` contains a malformed state document (one line, exit 4); `status`,
        `history` and `drift` on the same store printed a Python traceback."""
        import json

        cli, [user], _ = adopted(simulator, tmp_path)
        path = cli.state_dir / "accounts" / f"{user.lower()}.json"
        doc = json.loads(path.read_text())
        doc["current_token"] = "not-a-mapping"
        path.write_text(json.dumps(doc))
        for argv in (["rotate", user], ["status"], ["history", user], ["drift", user]):
            done = cli.run(*argv)
            assert done.returncode == 4, (argv, done.stdout, done.stderr)
            assert "Traceback" not in done.stdout + done.stderr, (argv, done.stderr)
            last = done.stderr.strip().splitlines()[-1]
            assert last.startswith("rotator: error:") and "TypeError" in last, (argv, last)


class TestProgressLineAndStopMessage:
    def test_stop_message_on_a_terminal_starts_on_a_cleared_line(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A fleet on a terminal redraws one progress line on stderr (no newline); the
        SIGINT notice was appended to it (`... slowest svc_x (1.5s)rotator: SIGINT ...`)."""
        import os
        import pty

        cli, users, _ = adopted(simulator, tmp_path, 2)
        simulator.add_fault(route="create_token", action="delay", seconds=2, username=users[0])
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rotator.cli", "--log-format", "console",
             "--log-level", "warning", "rotate", "--all", "--force", "--concurrency", "1"],
            env=cli.env(), cwd=cli.root, stdout=subprocess.PIPE, stderr=slave, text=True,
        )
        os.close(slave)
        seen = b""
        try:
            def progress_shown() -> bool:
                nonlocal seen
                seen += os.read(master, 65536)
                return b"slowest" in seen

            wait_until(progress_shown, timeout=60, what="the progress line")
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=120)
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 3, (out, seen)
        text = seen.decode(errors="replace")
        at = text.index("rotator: SIGINT received")
        before = text[:at]
        assert before.endswith(("\n", "\x1b[K")), repr(before[-80:])
        assert any(users[1] in line and "not_started" in line for line in out.splitlines())


class TestMetricsFileAfterAStop:
    def test_a_stopped_pass_sends_nothing_for_accounts_it_did_not_start(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """SIGTERM starts nothing new (README), but `--metrics-file` then listed every
        account's tokens, one MotherDuck call per account of the fleet, before exiting:
        under systemd's stop timeout, with a large fleet, that is the time a stop has."""
        cli, users, _ = adopted(simulator, tmp_path, 3)
        first = users[0]
        simulator.add_fault(route="create_token", action="delay", seconds=2, username=first)
        simulator.clear_requests()
        metrics = tmp_path / "rotator.prom"
        proc = cli.start(
            "rotate", "--all", "--force", "--concurrency", "1", "--json",
            "--metrics-file", str(metrics),
        )
        try:
            wait_until(
                lambda: any(
                    r["account"] == first and r["state"] in ("creating", "planned")
                    for r in cli.runs()
                ),
                timeout=60, what="the first account's run",
            )
            proc.send_signal(signal.SIGTERM)
        finally:
            code, out, err = finish(proc)
        assert code == 3, (out, err)
        docs = {d["account"]: d for d in json_lines(out)}
        for user in users[1:]:
            assert docs[user]["result"] == "not_started", docs[user]
            touched = [r for r in simulator.requests() if f"/users/{user}/" in r["path"]]
            assert touched == [], touched
        assert metrics.exists()
        assert "rotator_token_age_seconds" in metrics.read_text()


class TestPruneTable:
    def test_prune_table_prints_times_in_the_one_format(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """`state prune` (fleet branch) printed finished times as raw ISO with microseconds
        and +00:00, against README's one time format; --json keeps the full value."""
        cli, [user], _ = adopted(simulator, tmp_path)
        for _ in range(2):
            done = cli.run("rotate", user, "--force")
            assert done.returncode == 0, done.stderr
        table = cli.run("state", "prune", "--dry-run", "--keep", "1")
        assert table.returncode == 0, table.stderr
        rows = [line for line in table.stdout.splitlines() if "would_remove" in line]
        assert len(rows) == 1 and ONE_TIME_FORMAT.search(rows[0]), table.stdout
        assert not OTHER_TIME_FORMAT.search(table.stdout), table.stdout
        assert "would remove 1 run(s)" in table.stderr
        as_json = cli.run("state", "prune", "--dry-run", "--keep", "1", "--json")
        [doc] = json_lines(as_json.stdout)
        assert OTHER_TIME_FORMAT.fullmatch(doc["finished_at"]), doc


class TestFileBackendFenceSurvivesTheSymlinkPolicy:
    def test_a_stale_run_that_passed_its_lease_check_cannot_stage_into_the_file(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A stalls right after its lease check, before staging into the file; B takes over
        and completes. When A wakes, the file's sidecar (fence branch) must refuse it. The
        symlink policy (harden branch) re-resolved the path before every verb and reset
        the bound lease with it, so the file backend wrote unfenced."""
        cli, [user], _ = adopted(simulator, tmp_path)
        a = cli.start("rotate", user, "--force", "--json",
                      env=cli.env(ROTATOR_PAUSE_AT="fence:stage:file"))
        try:
            wait_until(lambda: stopped(a.pid), timeout=60, what="run A to stall")
            b = cli.run("rotate", user, "--force", "--json", env=cli.env(ROTATOR_NOW=later()))
            assert b.returncode == 0, b.stderr
            [done] = json_lines(b.stdout)
            assert done["result"] == "completed", done
        finally:
            a.send_signal(signal.SIGCONT)
        code, out, err = finish(a)
        assert code == 3, (out, err)
        path = cli.secret_file(user)
        assert not path.with_name(path.name + ".pending").exists()
        served = read_secret(path)
        assert served["token_id"] == done["new_token_id"]
        assert simulator.whoami(served["motherduck_token"]) == user
        # A's token was minted before the stall: revoked (by A itself or swept), not live.
        assert simulator.live_token_ids(user) == {done["new_token_id"]}
