"""Shared helpers for the reliability tests: one account on the simulator with the file,
Vault (OpenBao) and AWS (moto) backends together, real `rotator` subprocesses, and
invariant checks made from outside (what MotherDuck accepts, what consumers read).

Used by tests/integration/test_crash_harness.py, test_fault_matrix.py, test_bad_input.py
and scripts/reliability_report.py (through the JSON counts written by `record_counts`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.rotator_cli import CliSetup, json_lines, scan_for_secrets, seed_file
from tests.support.simulator_fixtures import SimulatorHandle, unique_username

__all__ = [
    "Rig",
    "RunResult",
    "make_rig",
    "record_counts",
    "report_dir",
    "sim_mutations",
]

REPORT_ENV = "ROTATOR_REPORT_DIR"
MUTATING = ("POST", "PUT", "DELETE", "PATCH")


def report_dir(default: Path) -> Path:
    """Where counts go: $ROTATOR_REPORT_DIR if set, else `default` (a pytest tmp dir)."""
    path = Path(os.environ.get(REPORT_ENV) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_counts(directory: Path, name: str, counts: dict[str, Any]) -> Path:
    """Write one test's counts as `<name>.json` (atomically) for the report script."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # module fixtures run once per worker
    if worker:
        name = f"{name}-{worker}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:150]
    path = directory / f"{safe}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"name": name, **counts}, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def sim_mutations(sim: SimulatorHandle) -> list[dict[str, Any]]:
    """Mutating REST requests in the simulator's log (whoami and reads excluded)."""
    return [r for r in sim.requests() if r["method"] in MUTATING]


@dataclass
class RunResult:
    code: int | None  # None: killed
    stdout: str
    stderr: str

    @property
    def results(self) -> list[dict[str, Any]]:
        return json_lines(self.stdout)


@dataclass
class Rig:
    """One service account wired to up to three backends, plus outside-world probes."""

    sim: SimulatorHandle
    cli: CliSetup
    user: str
    old_secret: str
    old_id: str
    bao: Any = None  # OpenBaoHandle
    kv_path: str | None = None
    aws: Any = None  # MotoHandle
    secret_id: str | None = None
    vault_token: str | None = None
    outputs: list[str] = field(default_factory=list)

    # -- running rotator ------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = self.cli.env(**extra)
        if self.aws is not None:
            env = self.aws.subprocess_env(env)
        return env

    def run(self, *args: str, timeout: float = 120, **env: str) -> RunResult:
        done = self.cli.run(*args, env=self.env(**env), timeout=timeout)
        self.outputs += [done.stdout, done.stderr]
        return RunResult(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return self.cli.start(*args, env=self.env(**env))

    def finish(self, proc: subprocess.Popen[str], *, kill: bool) -> RunResult:
        """Collect a process's output; SIGKILL it first when `kill` (and it still runs)."""
        killed = False
        if kill and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed = True
        out, err = proc.communicate(timeout=60)
        self.outputs += [out, err]
        code = proc.returncode
        return RunResult(None if killed and code == -signal.SIGKILL else code, out, err)

    # -- the state dir (read only) ----------------------------------------------------------

    def account_doc(self) -> dict[str, Any] | None:
        try:
            return self.cli.account_doc(self.user)
        except ValueError:
            return None

    def run_doc(self, run_id: str) -> dict[str, Any] | None:
        path = self.cli.state_dir / "runs" / f"{run_id}.json"
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return doc

    def run_ids(self) -> set[str]:
        return {r["run_id"] for r in self.cli.runs()}

    def newest_run(self, exclude: set[str]) -> dict[str, Any] | None:
        """The run started after `exclude` was taken (there is at most one per scenario)."""
        runs = [r for r in self.cli.runs() if r["run_id"] not in exclude]
        return max(runs, key=lambda r: r["started_at"]) if runs else None

    @staticmethod
    def signature(run: dict[str, Any] | None) -> tuple[Any, ...] | None:
        """A checkpoint boundary: the run's state and each backend's progress.

        Attempt counters are left out on purpose: every resumed process bumps them before
        its call, so a harness that killed on each new count would never let a run advance.
        """
        if run is None:
            return None
        progress = tuple(
            sorted((label.split(":", 1)[0], p["state"]) for label, p in run["backends"].items())
        )
        return (run["state"], progress)

    # -- the outside world -----------------------------------------------------------------

    def backend_tokens(self) -> dict[str, str | None]:
        """Each backend's current value, read the way its consumers read it."""
        values: dict[str, str | None] = {}
        path = self.cli.secret_file(self.user)
        values["file"] = _token_of(path.read_text()) if path.exists() else None
        if self.bao is not None and self.kv_path is not None:
            client = self.bao.root_client()
            answer = client.secrets.kv.v2.read_secret_version(
                self.kv_path, raise_on_deleted_version=True
            )
            values["vault"] = answer["data"]["data"].get("motherduck_token")
        if self.aws is not None and self.secret_id is not None:
            sm = self.aws.client("secretsmanager")
            answer = sm.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")
            values["aws"] = _token_of(answer["SecretString"])
        return values

    def i1_violations(self) -> list[str]:
        """I1: every backend holds a token MotherDuck (the simulator) accepts."""
        problems = []
        for name, token in self.backend_tokens().items():
            if token is None or self.sim.whoami(token) != self.user:
                problems.append(f"I1: {name} holds no working token for {self.user}")
        return problems

    def token_id_of(self, secret: str) -> str | None:
        for token in self.sim.tokens(self.user, live_only=False):
            if token["secret"] == secret:
                return str(token["id"])
        return None

    def rotator_tokens(self, live_only: bool = True) -> list[dict[str, Any]]:
        prefix = f"rotator-{self.user}-"
        return [
            t for t in self.sim.tokens(self.user, live_only=live_only)
            if (t["name"] or "").startswith(prefix)
        ]

    def end_violations(self, *, expect_revoked: Sequence[str] = ()) -> list[str]:
        """At the end of a run: I1, one live token that every backend serves (I2), old ones gone.

        The account record's current token must be the only live token of the account (the
        seeded initial token included once rotated away), every backend must serve it, and
        every id in `expect_revoked` must be revoked.
        """
        problems = self.i1_violations()
        doc = self.account_doc() or {}
        current = (doc.get("current_token") or {}).get("id")
        live = self.sim.live_token_ids(self.user)
        if live != {current}:
            problems.append(f"I2: live tokens {sorted(live)} != {{current {current}}}")
        live_rotator = {t["id"] for t in self.rotator_tokens()}
        if not live_rotator <= {current}:
            problems.append(f"I2: rotator-made tokens still live: {sorted(live_rotator - {current})}")
        for name, token in self.backend_tokens().items():
            if token is not None and self.token_id_of(token) != current:
                problems.append(f"I2: {name} serves {self.token_id_of(token)}, not {current}")
        for token_id in expect_revoked:
            if token_id in live:
                problems.append(f"I2: token {token_id} should be revoked but is live")
        return problems

    def state_blobs(self) -> list[bytes]:
        return [
            p.read_bytes()
            for p in self.cli.state_dir.rglob("*")
            if p.is_file() and p.name != "key"
        ]

    def i5_violations(self) -> list[str]:
        """I5: no issued secret in any captured output or state file."""
        blobs: list[str | bytes] = [*self.outputs, *self.state_blobs()]
        leaked = scan_for_secrets(blobs, self.sim.all_secrets())
        return [f"I5: secret {s} appears in output or state" for s in leaked]

    def snapshot(self) -> dict[str, Any]:
        """Everything "no change anywhere" compares: tokens, backends, state files."""
        return {
            "tokens": sorted((t["id"], t["live"]) for t in self.sim.tokens(self.user, False)),
            "backends": self.backend_tokens(),
            "state": sorted(
                (str(p.relative_to(self.cli.state_dir)), p.read_bytes())
                for p in self.cli.state_dir.rglob("*")
                # Leases change on every acquire and release; the journal is the write-ahead
                # log of the documents compared here (and of those lease writes).
                if p.is_file() and p.parent.name not in ("leases", "journal")
            )
            if self.cli.state_dir.exists()
            else [],
        }


def _token_of(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if text.startswith("{"):
        value = json.loads(text).get("motherduck_token")
        return value if isinstance(value, str) else None
    return text


def make_rig(
    sim: SimulatorHandle,
    root: Path,
    *,
    bao: Any = None,
    kv_path: str | None = None,
    aws: Any = None,
    policy: str = "",
    fmt: str = "json",
    vault_token: str | None = None,
    vault_extra: str = "",
    adopt: bool = True,
) -> Rig:
    """Seed an account and its initial token into every backend, write the config, adopt."""
    user = unique_username()
    old_secret, old_id = sim.seed(user, token_name="initial")
    tables = [f'type = "file"\npath = "secrets/{user}.json"\nformat = "{fmt}"']
    secret_id = None
    initial = json.dumps({"motherduck_token": old_secret, "token_id": old_id})
    if bao is not None:
        assert kv_path is not None
        bao.root_client().secrets.kv.v2.create_or_update_secret(
            kv_path, {"motherduck_token": old_secret, "token_id": old_id}
        )
        tables.append(
            f'type = "vault"\nurl = "{bao.url}"\npath = "{kv_path}"\nformat = "{fmt}"\n'
            f"timeout = 3\n{vault_extra}"
        )
    if aws is not None:
        secret_id = f"rotator/{user}"
        aws.client("secretsmanager").create_secret(
            Name=secret_id, SecretString=initial if fmt == "json" else old_secret
        )
        tables.append(
            f'type = "aws-secrets-manager"\nsecret_id = "{secret_id}"\n'
            f'region = "{aws.region}"\nendpoint_url = "{aws.endpoint_url}"\nformat = "{fmt}"'
        )
    extra_env = {}
    if bao is not None:
        extra_env["VAULT_TOKEN"] = vault_token or bao.root_token
    cli = CliSetup(
        root, sim.url, sim.admin_token, [user], {user: tables}, policy=policy,
        extra_env=extra_env,
    ).write()
    path = cli.secret_file(user)
    if fmt == "json":
        seed_file(path, old_secret, old_id)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(old_secret)
        path.chmod(0o600)
    rig = Rig(
        sim, cli, user, old_secret, old_id, bao=bao, kv_path=kv_path, aws=aws,
        secret_id=secret_id, vault_token=vault_token,
    )
    if adopt:
        done = rig.run("adopt", user, "--token-id", old_id)
        assert done.code == 0, done.stderr
    return rig


def poll_deadline(seconds: float) -> float:
    return time.monotonic() + seconds
