"""The Lambda handler honours Secrets Manager's rotation contract exactly (issue 13).

Every invocation runs in a fresh process (a cold start: `python -c` importing
rotator.aws_lambda, boto3 pointed at moto, state in DynamoDB on moto), with one, two and
three backends per account (AWS Secrets Manager; + OpenBao; + a file). After every
delivery the test reads the whole outside world: the secret's labels (VersionIdsToStages
from DescribeSecret) and each version's value, the simulator's live tokens and its
mutating requests, the file and the Vault secret a consumer reads, and every item of the
DynamoDB table; and it asserts that only what the step owns moved.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rotator import aws_lambda
from rotator.state.dynamodb import create_table
from tests.support.procs import wait_until
from tests.support.simulator_fixtures import unique_username

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
LAYOUTS = {1: ("aws",), 2: ("aws", "vault"), 3: ("aws", "vault", "file")}
SCHEDULED = (
    {"source": "rotator.schedule"},
    {"source": "aws.events", "detail-type": "Scheduled Event", "id": "x", "detail": {}},
)

# Runs the handler on each event of argv[1] in this one process; prints one result line.
# What the Lambda package leaves out (examples/lambda/check_package.py) is unimportable
# here, so every rotation below also proves the handler never needs it.
INVOKE = """
import json, sys

BLOCKED = ("rich", "pygments", "markdown_it", "prometheus_client", "rotator.simulator")

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(name + " is not in the Lambda package")
        return None

sys.meta_path.insert(0, Blocker())
from rotator import aws_lambda

class Context:
    aws_request_id = "req-contract"
    def get_remaining_time_in_millis(self):
        return 300_000

results = []
for event in json.loads(sys.argv[1]):
    try:
        results.append({"ok": aws_lambda.handler(event, Context())})
    except Exception as exc:
        results.append({"error": type(exc).__name__, "message": str(exc)})
print("RESULTS " + json.dumps(results))
"""


@dataclass
class Snapshot:
    """Everything a consumer or an operator could see, for before/after comparisons."""

    stages: dict[str, list[str]]
    values: dict[str, str | None]  # version id -> token id its value holds
    live: set[str]
    file: str | None
    vault: tuple[int, str] | None  # (latest version, token id)
    items: dict[str, dict[str, Any]]  # DynamoDB pk -> item

    def holder(self, label: str) -> str | None:
        return next((v for v, s in self.stages.items() if label in s), None)


class World:
    """One account under rotation: its secret, its other backends, the simulator, DynamoDB."""

    def __init__(
        self,
        aws: Any,
        sim: Any,
        bao: Any,
        tmp: Path,
        monkeypatch: pytest.MonkeyPatch,
        kinds: tuple[str, ...],
        policy: str = "",
        motherduck: str = "",
    ) -> None:
        self.aws, self.sim, self.bao, self.tmp, self.kinds = aws, sim, bao, tmp, kinds
        self.user = unique_username()
        self.old_secret, self.old_id = sim.seed(self.user)
        self.sm = aws.client("secretsmanager")
        self.ddb = aws.client("dynamodb")
        self.name = f"motherduck/{self.user}"
        value = json.dumps({"motherduck_token": self.old_secret, "token_id": self.old_id})
        self.arn = self.sm.create_secret(Name=self.name, SecretString=value)["ARN"]
        self.table = f"rotator-{self.user}"
        create_table(self.table, region=aws.region, endpoint_url=aws.endpoint_url)
        self.file = tmp / "secrets" / f"{self.user}.json"
        self.kv_path = f"rotator-tests/lambda-{uuid.uuid4().hex[:10]}/md"
        backends = [
            f'[[accounts.backends]]\ntype = "aws-secrets-manager"\n'
            f'secret_id = "{self.name}"\nregion = "{aws.region}"\n'
        ]
        if "vault" in kinds:
            bao.root_client().secrets.kv.v2.create_or_update_secret(
                self.kv_path, {"motherduck_token": self.old_secret, "token_id": self.old_id}
            )
            backends.append(
                f'[[accounts.backends]]\ntype = "vault"\nurl = "{bao.url}"\npath = "{self.kv_path}"\n'
            )
        if "file" in kinds:
            self.file.parent.mkdir(parents=True)
            self.file.write_text(value)
            backends.append(f'[[accounts.backends]]\ntype = "file"\npath = "{self.file}"\n')
        self.config = f"""
[motherduck]
api_url = "{sim.url}"
admin_token_env = "TEST_MD_ADMIN"
{motherduck}
[state]
store = "dynamodb"
table = "{self.table}"
region = "{aws.region}"
[defaults]
checks = ["readback", "simulator"]
{policy}
[[accounts]]
username = "{self.user}"
{"".join(backends)}"""
        self.env = aws.subprocess_env()
        self.env.update(
            ROTATOR_CONFIG=self.config,
            TEST_MD_ADMIN=sim.admin_token,
            VAULT_TOKEN=bao.root_token,
        )
        for key in ("ROTATOR_CONFIG", "TEST_MD_ADMIN", "VAULT_TOKEN"):
            monkeypatch.setenv(key, self.env[key])
        aws_lambda.reset()
        aws_lambda._engine().adopt(self.user, self.old_id)
        aws_lambda.reset()

    # -- driving ------------------------------------------------------------------------

    def start_rotation(self, secret: str | None = None) -> str:
        """What Secrets Manager does before createSecret: rotation on, an empty AWSPENDING."""
        secret = secret or self.name
        with contextlib.suppress(self.sm.exceptions.ResourceNotFoundException):
            self.sm.rotate_secret(
                SecretId=secret,
                RotationLambdaARN="arn:aws:lambda:us-east-1:123456789012:function:rotator",
                RotationRules={"AutomaticallyAfterDays": 30},
            )
        stages = self.sm.describe_secret(SecretId=secret)["VersionIdsToStages"]
        [token] = [v for v, s in stages.items() if "AWSPENDING" in s]
        return token

    def event(self, token: str, step: str, secret: str | None = None) -> dict[str, str]:
        return {"SecretId": secret or self.arn, "ClientRequestToken": token, "Step": step}

    def invoke(self, *events: Any, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Deliver `events` to a cold-started handler in a fresh process; their results."""
        done = subprocess.run(
            [sys.executable, "-c", INVOKE, json.dumps(list(events))],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        for secret in self.sim.all_secrets():  # I5: no token in anything it printed
            assert secret not in done.stdout and secret not in done.stderr
        [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULTS ")]
        results: list[dict[str, Any]] = json.loads(line.removeprefix("RESULTS "))
        return results

    def ok(self, *events: Any) -> list[dict[str, Any]]:
        results = self.invoke(*events)
        assert all("ok" in r for r in results), results
        return [r["ok"] for r in results]

    # -- observing ----------------------------------------------------------------------

    def snapshot(self, secret: str | None = None) -> Snapshot:
        secret = secret or self.name
        stages = {
            v: sorted(s)
            for v, s in self.sm.describe_secret(SecretId=secret)["VersionIdsToStages"].items()
            if s
        }
        values = {v: self._token_id_of(secret, v) for v in stages}
        vault = None
        if "vault" in self.kinds:
            read = self.bao.root_client().secrets.kv.v2.read_secret_version(
                self.kv_path, raise_on_deleted_version=True
            )["data"]
            vault = (read["metadata"]["version"], read["data"]["token_id"])
        file = json.loads(self.file.read_text())["token_id"] if "file" in self.kinds else None
        items = {
            i["pk"]["S"]: i
            for i in self.ddb.scan(TableName=self.table, ConsistentRead=True)["Items"]
        }
        return Snapshot(stages, values, self.sim.live_token_ids(self.user), file, vault, items)

    def _token_id_of(self, secret: str, version: str) -> str | None:
        try:
            answer = self.sm.get_secret_value(SecretId=secret, VersionId=version)
        except self.sm.exceptions.ResourceNotFoundException:
            return None  # Secrets Manager's AWSPENDING version before createSecret puts a value
        return str(json.loads(answer["SecretString"])["token_id"])

    def run(self, token: str) -> dict[str, Any]:
        return dict(self.items(f"run#{token}"))

    def items(self, pk: str) -> dict[str, Any]:
        item = self.ddb.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return dict(item.get("Item", {}))

    def run_state(self, token: str) -> str | None:
        item = self.run(token)
        return _doc(item).get("state") if item else None

    def mutations(self) -> list[str]:
        """The simulator's mutating requests since the last `clear`."""
        return [r["route"] for r in self.sim.requests() if r["method"] != "GET"]


def _doc(item: dict[str, Any]) -> dict[str, Any]:
    """A run or account document from its DynamoDB item (stored as JSON in `doc`)."""
    for value in item.values():
        if "S" in value and value["S"].startswith("{"):
            with contextlib.suppress(ValueError):
                doc: dict[str, Any] = json.loads(value["S"])
                return doc
    return {}


def _leases_removed(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in items.items() if not k.startswith("lease#")}


@pytest.fixture
def world(
    aws: Any, simulator: Any, openbao_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    made: list[World] = []

    def make(backends: int, policy: str = 'revoke_grace = "0s"', motherduck: str = "") -> World:
        w = World(
            aws,
            simulator,
            openbao_server,
            tmp_path,
            monkeypatch,
            LAYOUTS[backends],
            policy,
            motherduck,
        )
        made.append(w)
        return w

    yield make
    aws_lambda.reset()


# -- the four steps, each delivered twice -------------------------------------------------


@pytest.mark.parametrize("backends", [1, 2, 3])
def test_each_step_does_its_own_work_twice_over(world: Any, backends: int) -> None:
    """Each step, delivered twice to cold starts, moves only what it owns, once."""
    w: World = world(backends)
    token = w.start_rotation()
    start = w.snapshot()
    current = start.holder("AWSCURRENT")
    assert start.stages == {current: ["AWSCURRENT"], token: ["AWSPENDING"]}
    assert start.values == {current: w.old_id, token: None}
    w.sim.clear_requests()

    # createSecret: mint, put under AWSPENDING with VersionId = token; nothing else.
    created = _deliver_twice(w, token, "createSecret")
    new_id = created.values[token]
    assert new_id not in (None, w.old_id)
    assert created.stages == start.stages
    assert created.values == {current: w.old_id, token: new_id}
    assert created.live == {w.old_id, new_id}
    assert (created.file, created.vault) == (start.file, start.vault)
    assert w.mutations() == ["create_token"]
    assert _doc(w.run(token))["state"] == "storing"

    # setSecret: the other backends get the new token; labels and MotherDuck untouched.
    stored = _deliver_twice(w, token, "setSecret")
    assert (stored.stages, stored.values, stored.live) == (
        created.stages,
        created.values,
        created.live,
    )
    assert stored.file == start.file  # staged beside it (.pending) until finishSecret
    if "vault" in w.kinds:
        assert stored.vault == (start.vault[0] + 1, new_id)  # KV v2: visible once written
    assert w.mutations() == ["create_token"]
    assert _doc(w.run(token))["state"] == "stored"

    # testSecret: checks only; nothing anywhere moves.
    tested = _deliver_twice(w, token, "testSecret")
    assert (tested.stages, tested.values, tested.live, tested.file, tested.vault) == (
        stored.stages,
        stored.values,
        stored.live,
        stored.file,
        stored.vault,
    )
    assert w.mutations() == ["create_token"]
    assert _doc(w.run(token))["state"] == "verified"

    # finishSecret: AWSCURRENT new, AWSPREVIOUS old, no AWSPENDING; old token revoked.
    finished = _deliver_twice(w, token, "finishSecret")
    assert finished.stages == {current: ["AWSPREVIOUS"], token: ["AWSCURRENT"]}
    assert finished.values == created.values
    assert finished.live == {new_id}
    assert w.sim.whoami(w.old_secret) is None
    if "file" in w.kinds:
        assert finished.file == new_id
    if "vault" in w.kinds:
        assert finished.vault == stored.vault
    assert w.mutations() == ["create_token", "revoke_token"]
    assert _doc(w.run(token))["state"] == "completed"
    assert not _doc(w.items(f"account#{w.user.lower()}")).get("active_run_id")


def _deliver_twice(w: World, token: str, step: str) -> Snapshot:
    """Deliver `step` to two cold starts; the retry must change nothing at all."""
    first = w.ok(w.event(token, step))
    after_first = w.snapshot()
    mutations = w.mutations()
    second = w.ok(w.event(token, step))
    after_second = w.snapshot()
    assert after_second == after_first, f"the retried {step} changed something"
    assert w.mutations() == mutations
    assert first[0]["state"] == second[0]["state"]
    return after_first


def test_grace_is_left_to_the_schedule(world: Any) -> None:
    """With a grace, finishSecret stops at awaiting_revoke; the schedule revokes after it."""
    w: World = world(2, 'revoke_grace = "1h"')
    token = w.start_rotation()
    for step in STEPS:
        [result] = w.ok(w.event(token, step))
    assert result["state"] == "awaiting_revoke"
    snap = w.snapshot()
    assert snap.stages[token] == ["AWSCURRENT"] and "AWSPENDING" not in str(snap.stages)
    new_id = snap.values[token]
    assert snap.live == {w.old_id, new_id}
    [early] = w.ok({"source": "rotator.schedule"})
    assert [r["result"] for r in early["results"]] == ["awaiting_revoke"]
    assert w.sim.live_token_ids(w.user) == {w.old_id, new_id}
    [again] = w.ok(w.event(token, "finishSecret"))  # a retry before the grace: still waiting
    assert again["state"] == "awaiting_revoke"
    later = {"ROTATOR_NOW": "2999-01-01T00:00:00+00:00"}
    [done] = [r["ok"] for r in w.invoke({"source": "rotator.schedule"}, env=later)]
    assert [r["result"] for r in done["results"]] == ["completed"]
    assert w.sim.live_token_ids(w.user) == {new_id}
    assert w.run_state(token) == "completed"


# -- failures: each leaves no side effect --------------------------------------------------


@pytest.mark.parametrize("backends", [1, 3])
def test_refused_create_rolls_back_and_unblocks(world: Any, backends: int) -> None:
    """A 403 on create: every step raises, AWSPENDING is dropped, the next rotation works."""
    w: World = world(backends)
    token = w.start_rotation()
    before = w.snapshot()
    w.sim.add_fault(route="create_token", action="error", status=403)
    [first] = w.invoke(w.event(token, "createSecret"))
    assert first["error"] == "RotationError" and "rolled back" in first["message"]
    after = w.snapshot()
    current = before.holder("AWSCURRENT")
    assert after.stages == {current: ["AWSCURRENT"]}  # AWSPENDING gone from our version
    assert after.values == {current: w.old_id}
    assert after.live == before.live == {w.old_id}
    assert (after.file, after.vault) == (before.file, before.vault)
    account = _doc(w.items(f"account#{w.user.lower()}"))
    assert account["current_token"]["id"] == w.old_id and not account.get("active_run_id")
    assert w.run_state(token) == "rolled_back"
    # Secrets Manager retries, then gives up on the later steps: all fail, nothing moves.
    results = w.invoke(*(w.event(token, step) for step in STEPS))
    assert all("error" in r for r in results), results
    assert w.snapshot() == after
    # The next rotation is not blocked by a leftover AWSPENDING.
    w.sim.clear_faults()
    nxt = w.start_rotation()
    assert nxt != token
    for step in STEPS:
        w.ok(w.event(nxt, step))
    done = w.snapshot()
    assert done.stages[nxt] == ["AWSCURRENT"] and done.stages[current] == ["AWSPREVIOUS"]
    assert done.live == {done.values[nxt]}


def test_foreign_secret_is_refused(world: Any) -> None:
    """An unconfigured secret, even tagged rotator:account, is refused; nothing moves."""
    w: World = world(3)
    mine = w.start_rotation()
    other_name = f"other/{w.user}"
    other_arn = w.sm.create_secret(
        Name=other_name,
        SecretString='{"motherduck_token": "x", "token_id": "theirs"}',
        Tags=[{"Key": "rotator:account", "Value": w.user}],
    )["ARN"]
    theirs = w.start_rotation(other_name)
    before, before_other = w.snapshot(), w.snapshot(other_name)
    w.sim.clear_requests()
    results = w.invoke(*(w.event(theirs, step, secret=other_arn) for step in STEPS))
    assert all("belongs to no configured account" in r.get("message", "") for r in results)
    # Our own secret, tagged for another account: the tag disagrees with the config.
    w.sm.tag_resource(SecretId=w.name, Tags=[{"Key": "rotator:account", "Value": "svc_other"}])
    [disagree] = w.invoke(w.event(mine, "createSecret"))
    assert "tagged rotator:account=svc_other" in disagree["message"]
    assert w.snapshot() == before and w.snapshot(other_name) == before_other
    assert w.mutations() == []


def test_unrecognised_events_touch_nothing(world: Any) -> None:
    """Malformed events fail with a message naming the field; nothing anywhere changes."""
    w: World = world(3)
    token = w.start_rotation()
    before = w.snapshot()
    w.sim.clear_requests()
    bad = [
        ({}, "neither a Secrets Manager rotation"),
        ({"SecretId": w.arn, "Step": "createSecret"}, "missing ClientRequestToken"),
        ({"ClientRequestToken": token}, "missing SecretId, Step"),
        ({**w.event(token, "createSecret"), "Step": "rotateSecret"}, "event.Step"),
        ({**w.event(token, "createSecret"), "SecretId": ""}, "event.SecretId"),
        ({"accounts": w.user}, "event.accounts: expected a non-empty list"),
        ({"accounts": [w.user, 7]}, "event.accounts[1]"),
        ({"accounts": ["svc_nobody"]}, "event.accounts[0]: account 'svc_nobody'"),
        ({"source": "aws.events", "detail-type": "Object Created"}, "event.detail-type"),
        ({"source": "aws.s3"}, "event.source"),
        ([1, 2], "expected a JSON object"),
    ]
    results = w.invoke(*(event for event, _ in bad))
    for (event, message), result in zip(bad, results, strict=True):
        assert result.get("error") == "EventError", (event, result)
        assert message in result["message"], (event, result)
        assert "\n" not in result["message"]
    assert w.snapshot() == before
    assert w.mutations() == []


@pytest.mark.parametrize("backends", [1, 3])
def test_schedule_between_steps_leaves_the_run_alone(world: Any, backends: int) -> None:
    """A scheduled pass between steps reports the run in_progress and changes nothing."""
    w: World = world(backends)
    token = w.start_rotation()
    for step in STEPS:
        w.ok(w.event(token, step))
        if step == "finishSecret":
            break
        before = w.snapshot()
        w.sim.clear_requests()
        results = w.ok(*SCHEDULED, {"accounts": [w.user]})
        for result in results:
            assert [r["result"] for r in result["results"]] == ["in_progress"], result
            assert token in result["results"][0]["message"]
        assert w.snapshot() == before, f"a scheduled pass after {step} changed something"
        assert w.mutations() == []
    done = w.snapshot()
    assert done.stages[token] == ["AWSCURRENT"]
    assert done.live == {done.values[token]}


def test_step_out_of_order_raises_without_effect(world: Any) -> None:
    """testSecret before setSecret, or finishSecret before testSecret, raises; nothing moves."""
    w: World = world(2)
    token = w.start_rotation()
    w.ok(w.event(token, "createSecret"))
    before = w.snapshot()
    results = w.invoke(w.event(token, "testSecret"), w.event(token, "finishSecret"))
    assert "testSecret before setSecret finished" in results[0]["message"]
    assert "finishSecret before testSecret finished" in results[1]["message"]
    assert _leases_removed(w.snapshot().items) == _leases_removed(before.items)
    assert w.snapshot().stages == before.stages and w.snapshot().vault == before.vault


def test_create_killed_mid_flight_then_retried(world: Any) -> None:
    """A cold start killed while its create is in flight: the retry leaves one new token."""
    w: World = world(2, motherduck='create_settle = "3s"')
    token = w.start_rotation()
    before = w.snapshot()
    w.sim.clear_requests()
    w.sim.add_fault(route="create_token", action="delay", seconds=1.5, times=1)
    proc = subprocess.Popen(
        [sys.executable, "-c", INVOKE, json.dumps([w.event(token, "createSecret")])],
        env=w.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # kill while the POST sits in the simulator's delay (before it commits)
        wait_until(
            lambda: any(f["fired"] for f in w.sim.faults()),
            timeout=60,
            what="the create to reach the simulator",
        )
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert _doc(w.run(token))["create_attempts"] == 1
    # The killed process never put a value; Secrets Manager retries createSecret.
    assert w.snapshot().values[token] is None
    created = _deliver_twice(w, token, "createSecret")
    new_id = created.values[token]
    assert new_id is not None and created.stages == before.stages
    # The first create committed after its process died: found by name and revoked (I2).
    named = [t for t in w.sim.tokens(w.user, live_only=False) if t["name"].startswith("rotator-")]
    assert len(named) == 2 and {t["id"] for t in named if t["live"]} == {new_id}
    assert created.live == {w.old_id, new_id}
    assert sorted(w.mutations()) == ["create_token", "create_token", "revoke_token"]
    for step in STEPS[1:]:
        w.ok(w.event(token, step))
    done = w.snapshot()
    assert done.stages[token] == ["AWSCURRENT"] and done.live == {new_id}
