"""Observing rotations from outside: the audit file, the Prometheus textfile, webhooks and
Slack on a local HTTP server, EMF lines from Lambda, and revokes MotherDuck answers badly.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator import aws_lambda
from rotator.engine.revoking import MAX_REVOKE_ATTEMPTS
from tests.integration.test_lambda import STEPS, Context, Setup
from tests.support.rotator_cli import CliSetup, json_lines, scan_for_secrets, seed_file
from tests.support.simulator_fixtures import unique_username
from tests.unit.test_metrics import validate_emf


def account(sim: Any, tmp_path: Path, policy: str = "") -> tuple[CliSetup, str, str]:
    user = unique_username()
    secret, token_id = sim.seed(user, token_name="initial")
    cli = CliSetup(tmp_path, sim.url, sim.admin_token, [user], policy=policy).write()
    seed_file(cli.secret_file(user), secret, token_id)
    assert cli.run("adopt", user, "--token-id", token_id).returncode == 0
    return cli, user, token_id


class Hooks:
    """A webhook receiver on a free loopback port: records every request; 500s on demand."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self.fail_first: dict[str, int] = {}
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.requests.append((self.path, body))
                left = received.fail_first.get(self.path, 0)
                received.fail_first[self.path] = max(left - 1, 0)
                self.send_response(500 if left else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(body) for p, body in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    server = Hooks()
    yield server
    server.close()


def notifications(url: str) -> str:
    return f"""
[notifications]
on_success = [
  {{type = "webhook", url = "{url}/ok", timeout = "5s", retries = 3, backoff = "0s"}},
  {{type = "slack", url = "{url}/slack", backoff = "0s"}},
]
on_failure = [{{type = "webhook", url = "{url}/failed", retries = 1, backoff = "0s"}}]
"""


class TestAudit:
    def test_audit_file_records_every_transition(self, simulator: Any, tmp_path: Path) -> None:
        """Every transition of a rotation is one line in state/audit.jsonl (0600), no secrets."""
        cli, user, old_id = account(simulator, tmp_path)
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        path = cli.state_dir / "audit.jsonl"
        assert path.stat().st_mode & 0o777 == 0o600
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert {line["event"] for line in lines} == {"run.transitioned"}
        states = [line["to_state"] for line in lines]
        assert states[0] == "creating" and states[-1] == "completed"
        assert "revoking" in states and lines[-1]["old_token_id"] == old_id
        assert all(a["to_state"] == b["from_state"] for a, b in itertools.pairwise(lines))
        assert (
            scan_for_secrets([path.read_text(), done.stdout, done.stderr], simulator.all_secrets())
            == []
        )
        # Append-only: a second rotation adds lines after the first ones, unchanged.
        first = path.read_text()
        assert cli.run("rotate", user, "--force").returncode == 0
        assert path.read_text().startswith(first) and len(path.read_text()) > len(first)


class TestMetrics:
    def test_textfile_after_rotate_and_status(self, simulator: Any, tmp_path: Path) -> None:
        """rotate/status --metrics-file write values that parse back and match the world."""
        cli, user, _ = account(simulator, tmp_path)
        prom = tmp_path / "textfile" / "rotator.prom"
        done = cli.run("rotate", user, "--force", "--json", "--metrics-file", str(prom))
        assert done.returncode == 0, done.stderr
        samples = parse(prom)
        assert samples[("rotator_live_tokens_on_account", user)] == len(simulator.live_token_ids(user)) == 1
        assert samples[("rotator_rotation_outcome_total", "completed", "completed")] == 1
        assert samples[("rotator_overlap_seconds", user)] >= 0
        assert samples[("rotator_rotation_duration_seconds", user)] >= 0
        # Two days later (pinned clock): the age is exact, read from the state store alone.
        created = datetime.fromisoformat(cli.account_doc(user)["current_token"]["created_ts"])
        later = (created + timedelta(days=2)).isoformat()
        status = cli.run("status", "--metrics-file", str(prom), env=cli.env(ROTATOR_NOW=later))
        assert status.returncode == 0, status.stderr
        samples = parse(prom)
        assert samples[("rotator_token_age_seconds", user)] == pytest.approx(2 * 86400)
        assert samples[("rotator_time_since_last_success_seconds", user)] >= 2 * 86400 - 60
        assert ("rotator_live_tokens_on_account", user) not in samples  # status alone does not ask

    def test_failed_run_counted_by_step(self, simulator: Any, tmp_path: Path) -> None:
        """A run rolled back by a failing check counts as rolled_back at `verifying`."""
        policy = 'checks = ["readback", {type = "command", command = ["false"]}]'
        cli, user, _ = account(simulator, tmp_path, policy)
        prom = tmp_path / "rotator.prom"
        assert cli.run("rotate", user, "--force", "--metrics-file", str(prom)).returncode == 1
        assert parse(prom)[("rotator_rotation_outcome_total", "rolled_back", "verifying")] == 1


    def test_a_fifo_at_the_metrics_path_is_left_alone(self, simulator: Any, tmp_path: Path) -> None:
        """The textfile is written by rename: over a FIFO (or, as root, /dev/null) that
        would put a file in its place. Refused with a warning; the rotation's result and
        exit status are as without metrics."""
        cli, user, _ = account(simulator, tmp_path)
        fifo = tmp_path / "metrics.fifo"
        os.mkfifo(fifo)
        done = cli.run("rotate", user, "--force", "--json", "--metrics-file", str(fifo))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"] == "completed"
        [warning] = [json.loads(line) for line in done.stderr.splitlines()
                     if '"metrics.write_failed"' in line]
        assert "is a FIFO, which writing the textfile would replace" in warning["error"]
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def parse(path: Path) -> dict[tuple[str, ...], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, *s.labels.values())] = s.value
    return out


class TestNotifications:
    def test_success_webhook_retried_and_slack(
        self, simulator: Any, tmp_path: Path, hooks: Hooks
    ) -> None:
        """The webhook answers 500 first and is retried; Slack gets text+blocks; no secret sent."""
        cli, user, old_id = account(simulator, tmp_path, notifications(hooks.url))
        hooks.fail_first["/ok"] = 1
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        [result] = json_lines(done.stdout)
        first, second = hooks.bodies("/ok")  # one 500, one retry
        assert first == second
        assert second["outcome"] == "completed" and second["account"] == user
        assert second["old_token_id"] == old_id and second["new_token_id"] == result["new_token_id"]
        assert second["run_id"] == result["run_id"] and second["finished_at"]
        [slack] = hooks.bodies("/slack")
        assert set(slack) == {"text", "blocks"} and user in slack["text"]
        assert all(block["type"] == "section" for block in slack["blocks"])
        assert hooks.bodies("/failed") == []
        assert scan_for_secrets([b for _, b in hooks.requests], simulator.all_secrets()) == []
        assert '"notification.retry_scheduled"' in done.stderr

    def test_failure_webhook_and_dead_receiver(
        self, simulator: Any, tmp_path: Path, hooks: Hooks
    ) -> None:
        """A rollback notifies on_failure; a receiver that always fails does not change the exit."""
        policy = 'checks = ["readback", {type = "command", command = ["false"]}]\n'
        cli, user, old_id = account(simulator, tmp_path, policy + notifications(hooks.url))
        hooks.fail_first["/failed"] = 99
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 1, done.stderr  # rolled back, as without notifications
        bodies = hooks.bodies("/failed")
        assert len(bodies) == 2  # 1 + retries, then given up
        assert bodies[0]["outcome"] == "rolled_back" and bodies[0]["failure"]
        assert simulator.live_token_ids(user) == {old_id}
        assert '"notification.failed"' in done.stderr
        assert scan_for_secrets([b for _, b in hooks.requests], simulator.all_secrets()) == []


class TestRevokeFaults:
    def test_dropped_revoke_answer_still_completes(self, simulator: Any, tmp_path: Path) -> None:
        """DELETE commits but the answer is lost: the rotation completes, the old id is gone."""
        cli, user, old_id = account(simulator, tmp_path)
        simulator.add_fault(
            route="revoke_token", action="drop_after_commit", times=1, username=user
        )
        done = cli.run("rotate", user, "--force", "--json")
        assert done.returncode == 0, done.stderr
        [result] = json_lines(done.stdout)
        assert result["state"] == "completed"
        assert simulator.live_token_ids(user) == {result["new_token_id"]}
        assert old_id not in simulator.live_token_ids(user)
        revokes = [r for r in simulator.requests() if r["route"] == "revoke_token"]
        assert len(revokes) <= 3  # the dropped one and its retry, no loop

    def test_revoke_that_never_takes_needs_attention(self, simulator: Any, tmp_path: Path) -> None:
        """Every DELETE answers 500: after bounded runs, exit 4 naming the next safe action."""
        cli, user, old_id = account(simulator, tmp_path)
        simulator.add_fault(route="revoke_token", action="error", status=500, username=user)
        codes = []
        for _ in range(MAX_REVOKE_ATTEMPTS + 2):
            done = cli.run("rotate", user, "--force", "--json")  # resumes after the first
            codes.append(done.returncode)
            if done.returncode == 4:
                break
        assert codes[-1] == 4, codes
        [result] = json_lines(done.stdout)
        assert result["state"] == "failed_needs_attention"
        assert f"revoke token {old_id}" in result["message"]
        assert old_id in simulator.live_token_ids(user)  # nothing pretended otherwise


class TestLambda:
    def test_emf_lines_and_audit_log(
        self,
        aws: Any,
        simulator: Any,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A Lambda rotation prints valid EMF lines and logs each event as audit.recorded."""
        setup = Setup(aws, simulator, tmp_path, monkeypatch)
        try:
            capsys.readouterr()
            token = setup.start_rotation()
            for step in STEPS:
                aws_lambda.handler(setup.event(token, step), Context())
            out, err = capsys.readouterr()
        finally:
            aws_lambda.reset()
        records = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
        assert records
        for record in records:
            validate_emf(record)
            assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Rotator"
        [ended] = [r for r in records if "outcome" in r]
        assert ended["outcome"] == "completed" and ended["account"] == setup.user
        live = [r for r in records if "live_tokens_on_account" in r]
        assert live[-1]["live_tokens_on_account"] == len(simulator.live_token_ids(setup.user)) == 1
        audit = [json.loads(x) for x in (out + err).splitlines() if '"audit.recorded"' in x]
        assert audit and audit[-1]["to_state"] == "completed"
        assert scan_for_secrets([out, err], simulator.all_secrets()) == []
