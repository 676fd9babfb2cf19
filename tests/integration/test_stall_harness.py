"""Stall harness: stop a real `rotator rotate` (SIGSTOP) at every state and right before
every external effect, let a second process take its lease over and finish, then wake the
first one, and check from outside that the stale run changed nothing.

One account holds its token in three backends at once (a file, a Vault KV v2 secret on
an OpenBao dev server, an AWS Secrets Manager secret on moto); the state store is the
file store or DynamoDB (moto). Run A gets `ROTATOR_PAUSE_AT=<point>` and stops itself the
first time it reaches that point (rotator/util/pausepoints.py): `state:<state>` right after a
transition, `fence:<effect>` right after its lease check passed and just before the
effect — the worst instant, when a check-then-act design lets the effect through. Run B
then starts with its clock pinned past A's lease (`ROTATOR_NOW`), takes the lease over,
resumes A's run and finishes it (or `rotator abort`s it). Then A gets SIGCONT.

After each case:
* every backend serves a token MotherDuck accepts (I1);
* exactly one live token — the recorded current one, which every backend serves — and no
  other rotator-made token live (I2/I3); the token before the run is revoked (or, after a
  rollback or abort, is still current and served);
* A exited 3 (LeaseLost: incomplete, "another run holds the lease"), or 0 when it had
  nothing left to do, and made no visible change after B finished: the live token set,
  what consumers read, the AWS staging labels, the file backend's pending file and the
  run/account records are all as B left them.

The default suite runs a fast subset; `--run-slow` runs every point with both stores.
Counts go to $ROTATOR_REPORT_DIR (or the pytest tmp dir) for scripts/reliability_report.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Rig, RunResult, make_rig, record_counts, report_dir

LATENCY = 0.02
FINISHED_POINTS = ("state:completed", "state:rolled_back")  # A's run ended before it stalled
STOP_DEADLINE = 60.0
B_DEADLINE = 90.0
FORWARD = 'checks = ["readback", "simulator"]\n\n[defaults.hooks.after_promote]\ncommand = ["true"]'
FAILING = 'checks = ["readback", {type = "command", command = ["false"]}]'
KINDS = ("file", "vault", "aws-secrets-manager")

# Every point a forward rotation reaches, in order.
FORWARD_POINTS = [
    "state:creating",
    "fence:motherduck.create",
    "fence:motherduck.created",
    "state:created",
    "state:storing",
    *(f"fence:stage:{k}" for k in KINDS),
    "fence:vault.write_data",
    "state:stored",
    "state:verifying",
    "state:verified",
    "state:promoting",
    *(f"fence:promote:{k}" for k in KINDS),
    "fence:aws.move_current",
    "state:promoted",
    "fence:hook:after_promote",
    "state:awaiting_revoke",
    "state:revoking",
    "fence:motherduck.revoke_old",
    "state:completed",
]
# Every point a failed verification's rollback reaches.
ROLLBACK_POINTS = [
    "state:rolling_back",
    *(f"fence:rollback:{k}" for k in KINDS),
    "fence:motherduck.revoke",
    "state:rolled_back",
]


@dataclass(frozen=True)
class Case:
    point: str
    store: str = "file"
    rollback: bool = False  # the checks fail, so A's run rolls back
    abort: bool = False  # B is `rotator abort` instead of `rotator rotate`
    first: str = "file"  # the backend staged first (the one nothing else holds yet)

    @property
    def name(self) -> str:
        mode = "abort" if self.abort else "rollback" if self.rollback else "rotate"
        return f"{self.store}:{self.first}-first:{mode}:{self.point}"


# A stale stage matters most in the backend staged first: when B takes over, that backend
# is the only one A could have written, so B finds the token nowhere, revokes it and mints
# its own — and A's late write would put a revoked token where consumers read.
FAST_CASES = [
    Case("fence:motherduck.create"),
    Case("fence:stage:vault", first="vault"),
    Case("fence:stage:aws-secrets-manager", first="aws-secrets-manager"),
    Case("fence:aws.move_current", abort=True),
    Case("fence:stage:file", store="dynamodb"),
    Case("fence:motherduck.revoke_old", store="dynamodb"),
]
_ABORTABLE = ("fence:stage", "fence:promote", "fence:vault", "fence:aws", "state:sto", "state:ver")
FULL_CASES = [
    *(Case(p, store=s) for s in ("file", "dynamodb") for p in FORWARD_POINTS),
    *(Case(p, store=s, rollback=True) for s in ("file", "dynamodb") for p in ROLLBACK_POINTS),
    *(Case(p, first=k) for k in KINDS[1:] for p in FORWARD_POINTS[: FORWARD_POINTS.index("state:stored")]),
    *(Case(p, abort=True) for p in FORWARD_POINTS if p.startswith(_ABORTABLE)),
]


@dataclass
class Tally:
    cases: int = 0
    stalled: int = 0
    points: set[str] = field(default_factory=set)
    unreached: list[str] = field(default_factory=list)
    a_codes: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "stall",
            "cases": self.cases,
            "stalls": self.stalled,
            "distinct_points": len(self.points),
            "points": sorted(self.points),
            "unreached": self.unreached,
            "stale_exit_codes": sorted(set(self.a_codes.values())),
            "violations": self.violations,
            "violation_count": len(self.violations),
        }


# -- the state store, read from outside ------------------------------------------------------


class StateView:
    """The run and account records of either store, read the way a person would."""

    def __init__(self, rig: Rig, table: str | None) -> None:
        self.rig = rig
        self.table = table

    def _items(self) -> list[dict[str, Any]]:
        ddb = self.rig.aws.client("dynamodb")
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = ddb.scan(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def docs(self) -> dict[str, Any]:
        """Every run and account document, keyed by name (leases and audit left out)."""
        if self.table is None:
            root = self.rig.cli.state_dir
            return {
                str(p.relative_to(root)): json.loads(p.read_text())
                for sub in ("runs", "accounts")
                for p in sorted((root / sub).glob("*.json"))
            }
        return {
            i["pk"]["S"]: json.loads(i["doc"]["S"])
            for i in self._items()
            if i["pk"]["S"].startswith(("run#", "account#"))
        }

    def runs(self) -> list[dict[str, Any]]:
        return [d for k, d in self.docs().items() if k.startswith(("runs/", "run#"))]

    def account(self) -> dict[str, Any] | None:
        docs = self.docs()
        key = f"accounts/{self.rig.user.lower()}.json" if self.table is None else None
        key = key or f"account#{self.rig.user.lower()}"
        return docs.get(key)


class StoreRig(Rig):
    """A Rig whose account record comes from its StateView (file or DynamoDB)."""

    view: StateView

    def account_doc(self) -> dict[str, Any] | None:
        return self.view.account()


def use_dynamodb(rig: Rig, table: str) -> None:
    """Point the rig's config at a fresh DynamoDB table on the moto server."""
    from rotator.state.dynamodb import create_table

    create_table(table, region=rig.aws.region, endpoint_url=rig.aws.endpoint_url)
    path = rig.cli.config_path
    text = path.read_text()
    state = (
        f'[state]\nstore = "dynamodb"\ntable = "{table}"\nregion = "{rig.aws.region}"\n'
        f'endpoint_url = "{rig.aws.endpoint_url}"\n'
    )
    assert '[state]\npath = "state"\n' in text
    path.write_text(text.replace('[state]\npath = "state"\n', state))


def new_rig(sim: Any, bao: Any, aws: Any, root: Path, kv_path: str, *, store: str,
            policy: str, first: str) -> StoreRig:  # fmt: skip
    rig = make_rig(sim, root, bao=bao, kv_path=kv_path, aws=aws, policy=policy, adopt=False)
    tables = rig.cli.backend_tables[rig.user]
    tables.sort(key=lambda t: not t.startswith(f'type = "{first}"'))
    rig.cli.write()
    rig.__class__ = StoreRig
    assert isinstance(rig, StoreRig)
    table = None
    if store == "dynamodb":
        table = f"rotator-stall-{root.name}"
        use_dynamodb(rig, table)
    rig.view = StateView(rig, table)
    done = rig.run("adopt", rig.user, "--token-id", rig.old_id)
    assert done.code == 0, done.stderr
    return rig


# -- one case --------------------------------------------------------------------------------


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def outside(rig: StoreRig) -> dict[str, Any]:
    """What anyone but rotator can see: live tokens, consumer values, labels, records."""
    files = rig.cli.secret_file(rig.user)
    stages = rig.aws.client("secretsmanager").describe_secret(SecretId=rig.secret_id)[
        "VersionIdsToStages"
    ]
    return {
        "live": sorted(rig.sim.live_token_ids(rig.user)),
        "backends": rig.backend_tokens(),
        "aws_stages": {k: sorted(v) for k, v in stages.items()},
        "pending_file": files.with_name(files.name + ".pending").exists(),
        "records": rig.view.docs(),
    }


def run_b(rig: StoreRig, *args: str, **env: str) -> RunResult:
    """Run B to the end; if it hangs, dump its Python stacks (faulthandler) into stderr."""
    proc = rig.start(*args, PYTHONFAULTHANDLER="1", **env)
    try:
        proc.wait(timeout=B_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
    return rig.finish(proc, kill=False)


def run_case(rig: StoreRig, case: Case, tally: Tally) -> None:
    tally.cases += 1
    name = case.name
    prior = ((rig.account_doc() or {}).get("current_token") or {}).get("id")
    known = {r["run_id"] for r in rig.view.runs()}
    a = rig.start("rotate", rig.user, "--json", "--force", ROTATOR_PAUSE_AT=case.point)
    deadline = time.monotonic() + STOP_DEADLINE
    while a.poll() is None and not _stopped(a.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    if a.poll() is not None or not _stopped(a.pid):
        result = rig.finish(a, kill=True)
        tally.unreached.append(name)
        tally.violations.append(f"{name}: A never reached the point (exit {result.code})")
        return
    tally.stalled += 1
    tally.points.add(case.point)
    try:
        runs = [r for r in rig.view.runs() if r["run_id"] not in known]
        pinned = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        if case.abort:
            assert runs, f"{name}: no run to abort"
            b = run_b(rig, "abort", runs[0]["run_id"], "--json", ROTATOR_NOW=pinned)
            want_b = {0}  # aborted: rolled back on request (exit 0, see README)
        else:
            b = run_b(rig, "rotate", rig.user, "--json", ROTATOR_NOW=pinned)
            want_b = {1} if case.rollback else {0}
            if case.point in FINISHED_POINTS:
                want_b = {0}  # A's run already ended: nothing to resume, the token is not due
        if b.code not in want_b:
            tally.violations.append(f"{name}: B exited {b.code}: {b.stderr.strip()[-3000:]}")
        after_b = outside(rig)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    result = rig.finish(a, kill=False)
    code = result.code if result.code is not None else -9
    tally.a_codes[name] = code
    finished_before_stall = case.point in FINISHED_POINTS
    if code != 3 and not (finished_before_stall and code in (0, 1)):
        tally.violations.append(f"{name}: stale A exited {code}: {result.stderr.strip()[-3000:]}")
    after_a = outside(rig)
    for key, value in after_b.items():
        if after_a[key] != value:
            tally.violations.append(f"{name}: stale A changed {key} after losing its lease")
    back_to_prior = case.rollback or case.abort
    problems = rig.end_violations(expect_revoked=[] if back_to_prior else [prior])
    current = ((rig.account_doc() or {}).get("current_token") or {}).get("id")
    if back_to_prior and current != prior:
        problems.append(f"I6: after rollback the current token is {current}, not {prior}")
    tally.violations += [f"{name}: {p}" for p in problems + rig.i5_violations()]


def sweep(cases: list[Case], sim: Any, bao: Any, aws: Any, root: Path, kv_path: str,
          tally: Tally) -> None:  # fmt: skip
    """Run cases on as few rigs as possible: one per (store, policy), reused while clean.

    `ROTATOR_STALL_ONLY=<text>` keeps only the cases whose name contains it (debugging).
    """
    only = os.environ.get("ROTATOR_STALL_ONLY")
    cases = [c for c in cases if not only or only in c.name]
    sim.set_latency(LATENCY)
    rigs: dict[tuple[str, bool, str], StoreRig] = {}
    for n, case in enumerate(cases):
        key = (case.store, case.rollback, case.first)
        if key not in rigs:
            policy = FAILING if case.rollback else FORWARD
            rigs[key] = new_rig(
                sim, bao, aws, root / f"rig{n}", f"{kv_path}-{n}", store=case.store,
                policy=policy, first=case.first,
            )
        before = len(tally.violations)
        run_case(rigs[key], case, tally)
        if len(tally.violations) > before:
            rigs.pop(key)  # a broken rig would blame the next case: start afresh


@pytest.fixture
def tally(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    t = Tally()
    started = time.monotonic()
    yield t
    counts = t.as_dict()
    counts["seconds"] = round(time.monotonic() - started, 1)
    directory = report_dir(tmp_path_factory.getbasetemp() / "reliability")
    record_counts(directory, f"stall-{request.node.name}", counts)


def test_stall_fast_subset(
    simulator: Any, openbao_server: Any, aws: Any, kv_path: str, tmp_path: Path, tally: Tally
) -> None:
    """Default suite: a stall before each kind of effect, an abort mid-promote, DynamoDB."""
    sweep(FAST_CASES, simulator, openbao_server, aws, tmp_path, kv_path, tally)
    assert tally.violations == [], "\n".join(tally.violations)
    assert tally.stalled == len(FAST_CASES)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_stall_full_sweep(
    simulator: Any, openbao_server: Any, aws: Any, kv_path: str, tmp_path: Path, tally: Tally
) -> None:
    """--run-slow: every state and every effect's fence point, both stores, rollback, abort."""
    sweep(FULL_CASES, simulator, openbao_server, aws, tmp_path, kv_path, tally)
    assert tally.violations == [], "\n".join(tally.violations)
    assert tally.unreached == []
