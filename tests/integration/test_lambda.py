"""The Lambda handler with real event shapes against moto (Secrets Manager + DynamoDB),
the simulator and the file backend: the four rotation steps, replays, failure, races,
and scheduled runs. Assertions read what a consumer would: AWSCURRENT by explicit stage,
the simulator's live tokens and its whoami answer.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator import aws_lambda
from rotator.errors import ConfigError, RotatorError
from rotator.state.dynamodb import create_table
from tests.support.simulator_fixtures import unique_username

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


class Context:
    aws_request_id = "req-test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class Setup:
    def __init__(
        self,
        aws: Any,
        sim: Any,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        checks: str = '["readback", "simulator"]',
        extra_policy: str = "",
    ) -> None:
        self.aws, self.sim, self.tmp = aws, sim, tmp_path
        self.user = unique_username()
        self.old_secret, self.old_id = sim.seed(self.user)
        self.sm = aws.client("secretsmanager")
        self.secret_name = f"motherduck/{self.user}"
        self.arn = self.sm.create_secret(
            Name=self.secret_name,
            SecretString=json.dumps({"motherduck_token": self.old_secret, "token_id": self.old_id}),
        )["ARN"]
        self.table = f"rotator-{self.user}"
        create_table(self.table, region=aws.region, endpoint_url=aws.endpoint_url)
        self.file = tmp_path / "secrets" / f"{self.user}.json"
        self.file.parent.mkdir(parents=True)
        self.file.write_text(
            json.dumps({"motherduck_token": self.old_secret, "token_id": self.old_id})
        )
        config = f"""
[motherduck]
api_url = "{sim.url}"
admin_token_env = "TEST_MD_ADMIN"
[state]
store = "dynamodb"
table = "{self.table}"
region = "{aws.region}"
[defaults]
checks = {checks}
{extra_policy}
[[accounts]]
username = "{self.user}"
  [[accounts.backends]]
  type = "aws-secrets-manager"
  secret_id = "{self.secret_name}"
  region = "{aws.region}"
  [[accounts.backends]]
  type = "file"
  path = "{self.file}"
"""
        monkeypatch.setenv("ROTATOR_CONFIG", config)
        monkeypatch.setenv("TEST_MD_ADMIN", sim.admin_token)
        aws_lambda.reset()
        aws_lambda._engine().adopt(self.user, self.old_id)

    def start_rotation(self) -> str:
        """What Secrets Manager does before calling createSecret: an empty AWSPENDING version."""
        # moto cannot invoke our function and says so, but leaves the rotation set up as
        # AWS would: rotation enabled and an empty AWSPENDING version.
        with contextlib.suppress(self.sm.exceptions.ResourceNotFoundException):
            self.sm.rotate_secret(
                SecretId=self.secret_name,
                RotationLambdaARN="arn:aws:lambda:us-east-1:123456789012:function:rotator",
                RotationRules={"AutomaticallyAfterDays": 30},
            )
        stages = self.sm.describe_secret(SecretId=self.secret_name)["VersionIdsToStages"]
        [token] = [v for v, s in stages.items() if "AWSPENDING" in s]
        return token

    def event(self, token: str, step: str) -> dict[str, str]:
        return {"SecretId": self.arn, "ClientRequestToken": token, "Step": step}

    def current(self) -> dict[str, Any]:
        value = self.sm.get_secret_value(SecretId=self.secret_name, VersionStage="AWSCURRENT")
        return dict(json.loads(value["SecretString"]))

    def stages(self) -> dict[str, list[str]]:
        return dict(self.sm.describe_secret(SecretId=self.secret_name)["VersionIdsToStages"])


@pytest.fixture
def setup(
    aws: Any, simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    yield Setup(aws, simulator, tmp_path, monkeypatch)
    aws_lambda.reset()


def test_four_steps_rotate_and_revoke(setup: Setup) -> None:
    """createSecret..finishSecret leave AWSCURRENT and the file on a new working token, old revoked."""
    token = setup.start_rotation()
    aws_lambda.handler(setup.event(token, "createSecret"), Context())
    pending = json.loads(
        setup.sm.get_secret_value(SecretId=setup.secret_name, VersionId=token)["SecretString"]
    )
    assert setup.current()["token_id"] == setup.old_id  # consumers still read the old token
    assert setup.sim.whoami(pending["motherduck_token"]) == setup.user
    assert setup.sim.live_token_ids(setup.user) == {setup.old_id, pending["token_id"]}
    aws_lambda.handler(setup.event(token, "setSecret"), Context())
    aws_lambda.handler(setup.event(token, "testSecret"), Context())
    assert setup.current()["token_id"] == setup.old_id
    result = aws_lambda.handler(setup.event(token, "finishSecret"), Context())
    assert result["state"] == "completed"
    assert setup.current()["token_id"] == pending["token_id"]
    assert "AWSCURRENT" in setup.stages()[token]
    assert json.loads(setup.file.read_text())["token_id"] == pending["token_id"]
    assert setup.sim.live_token_ids(setup.user) == {pending["token_id"]}
    assert setup.sim.whoami(setup.old_secret) is None


def test_every_step_replayed_twice(setup: Setup) -> None:
    """Secrets Manager retrying each step does no harm: one token minted, one revoke."""
    token = setup.start_rotation()
    setup.sim.clear_requests()
    for step in STEPS:
        for _ in range(3):
            aws_lambda.handler(setup.event(token, step), Context())
    routes = [r["route"] for r in setup.sim.requests()]
    assert routes.count("create_token") == 1
    assert routes.count("revoke_token") == 1
    assert len(setup.sim.live_token_ids(setup.user)) == 1
    assert setup.current()["token_id"] in setup.sim.live_token_ids(setup.user)


def test_failing_test_secret_keeps_old_current(
    aws: Any, simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing check in testSecret rolls back: AWSCURRENT old, old token valid, new revoked."""
    s = Setup(
        aws,
        simulator,
        tmp_path,
        monkeypatch,
        checks='["readback", {type = "command", command = ["false"]}]',
    )
    token = s.start_rotation()
    aws_lambda.handler(s.event(token, "createSecret"), Context())
    aws_lambda.handler(s.event(token, "setSecret"), Context())
    with pytest.raises(RotatorError, match="testSecret failed"):
        aws_lambda.handler(s.event(token, "testSecret"), Context())
    assert s.current()["token_id"] == s.old_id
    assert "AWSPENDING" not in s.stages().get(token, [])
    assert simulator.live_token_ids(s.user) == {s.old_id}
    assert simulator.whoami(s.old_secret) == s.user
    assert json.loads(s.file.read_text())["token_id"] == s.old_id
    with pytest.raises(RotatorError):
        aws_lambda.handler(s.event(token, "finishSecret"), Context())
    assert s.current()["token_id"] == s.old_id
    aws_lambda.reset()


def test_concurrent_create_secret_makes_one_token(setup: Setup) -> None:
    """Two invocations racing on createSecret never create two replacements."""
    token = setup.start_rotation()
    setup.sim.set_latency(0.3)
    setup.sim.clear_requests()
    errors: list[BaseException] = []

    def invoke() -> None:
        try:
            aws_lambda.handler(setup.event(token, "createSecret"), Context())
        except RotatorError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    setup.sim.set_latency(0)
    assert [r["route"] for r in setup.sim.requests()].count("create_token") == 1
    assert all("being rotated" in str(e) for e in errors)
    for step in STEPS:
        aws_lambda.handler(setup.event(token, step), Context())
    assert len(setup.sim.live_token_ids(setup.user)) == 1


def test_rejects_versions_it_should_not_touch(setup: Setup) -> None:
    """Unknown versions, non-pending versions and secrets without rotation are refused."""
    with pytest.raises(RotatorError, match="does not have rotation enabled"):
        aws_lambda.handler(
            setup.event("00000000-0000-4000-8000-000000000000", "createSecret"), Context()
        )
    token = setup.start_rotation()
    with pytest.raises(RotatorError, match="has no stage for rotation"):
        aws_lambda.handler(
            setup.event("00000000-0000-4000-8000-000000000000", "createSecret"), Context()
        )
    with pytest.raises(RotatorError, match="createSecret has not run"):
        aws_lambda.handler(setup.event(token, "setSecret"), Context())
    [current] = [v for v, s in setup.stages().items() if "AWSCURRENT" in s]
    assert (
        aws_lambda.handler(setup.event(current, "createSecret"), Context())["state"] == "completed"
    )


def test_an_unknown_log_level_fails_the_invocation_before_anything(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """ROTATOR_LOG_LEVEL=verbose: the step fails with one line naming the variable (logged
    as `lambda.config_refused`); no token is minted, AWSPENDING stays empty; fixed, the
    same step then runs."""
    token = setup.start_rotation()
    before = setup.stages()
    monkeypatch.setenv("ROTATOR_LOG_LEVEL", "verbose")
    with pytest.raises(ConfigError, match=r"^ROTATOR_LOG_LEVEL: 'verbose' is not a log level"):
        aws_lambda.handler(setup.event(token, "createSecret"), Context())
    refused = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert [e["event"] for e in refused] == ["lambda.config_refused"], refused
    assert setup.sim.live_token_ids(setup.user) == {setup.old_id}
    assert setup.stages() == before
    monkeypatch.setenv("ROTATOR_LOG_LEVEL", "WARNING")
    aws_lambda.handler(setup.event(token, "createSecret"), Context())
    assert len(setup.sim.live_token_ids(setup.user)) == 2


def test_scheduled_rotates_due_and_finishes_pending_revoke(
    aws: Any, simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduled event rotates what is due, and a later one completes the revoke after grace."""

    def at(iso: str) -> None:
        # rotator's clock and the simulator's move together, so token ages are consistent.
        now = datetime.fromisoformat(iso)
        offset = (now - datetime.now(UTC)).total_seconds()
        httpx.post(
            f"{simulator.url}/_sim/clock", json={"offset_seconds": offset}
        ).raise_for_status()
        monkeypatch.setenv("ROTATOR_NOW", iso)
        aws_lambda.reset()

    try:
        at("2029-11-20T00:00:00+00:00")
        s = Setup(
            aws,
            simulator,
            tmp_path,
            monkeypatch,
            extra_policy='revoke_grace = "1h"\nrotate_after = "30d"',
        )
        at("2029-12-01T00:00:00+00:00")
        idle = aws_lambda.handler(
            {"source": "aws.events", "detail-type": "Scheduled Event"}, Context()
        )
        assert [r["result"] for r in idle["results"]] == ["not_due"]
        at("2030-01-01T00:00:00+00:00")
        first = aws_lambda.handler(
            {"source": "aws.events", "detail-type": "Scheduled Event"}, Context()
        )
        assert [r["result"] for r in first["results"]] == ["awaiting_revoke"]
        new_id = s.current()["token_id"]
        assert new_id != s.old_id
        assert simulator.live_token_ids(s.user) == {s.old_id, new_id}
        at("2030-01-01T00:30:00+00:00")
        again = aws_lambda.handler({"source": "rotator.schedule"}, Context())
        assert [r["result"] for r in again["results"]] == ["awaiting_revoke"]
        at("2030-01-01T01:00:01+00:00")
        done = aws_lambda.handler({"accounts": [s.user]}, Context())
        assert [r["result"] for r in done["results"]] == ["completed"]
        assert simulator.live_token_ids(s.user) == {new_id}
        at("2030-01-02T00:00:00+00:00")
        after = aws_lambda.handler({"source": "rotator.schedule"}, Context())
        assert [r["result"] for r in after["results"]] == ["not_due"]
    finally:
        httpx.post(f"{simulator.url}/_sim/clock", json={"offset_seconds": 0}).raise_for_status()
        aws_lambda.reset()


def test_cli_reads_admin_token_from_secrets_manager(
    aws: Any, simulator: Any, tmp_path: Path
) -> None:
    """With admin_token_secret_id and no env var, the CLI reads the admin token from AWS."""
    sm = aws.client("secretsmanager")
    sm.create_secret(
        Name="md-admin", SecretString=json.dumps({"motherduck_token": simulator.admin_token})
    )
    user = unique_username()
    _, old_id = simulator.seed(user)
    config = tmp_path / "rotator.toml"
    config.write_text(
        f'[motherduck]\napi_url = "{simulator.url}"\nadmin_token_env = "UNSET_ADMIN"\n'
        'admin_token_secret_id = "md-admin"\n'
        f'[[accounts]]\nusername = "{user}"\n[[accounts.backends]]\ntype = "file"\npath = "s.json"\n'
    )
    env = aws.subprocess_env()
    env.pop("UNSET_ADMIN", None)
    done = subprocess.run(
        [sys.executable, "-m", "rotator.cli", "--config", str(config), "tokens", user, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [old_id]
    sm.delete_secret(SecretId="md-admin", ForceDeleteWithoutRecovery=True)
    done = subprocess.run(
        [sys.executable, "-m", "rotator.cli", "--config", str(config), "tokens", user],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "admin_token_secret_id" in done.stderr
    assert "Traceback" not in done.stderr
