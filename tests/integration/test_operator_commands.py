"""Operator commands that cannot make things worse: `abort`, `revoke`, the revoke guard, a
config edited under an unfinished run, and one account's crash in a fleet pass.

Each test runs the real `rotator` command against the simulator over HTTP (and OpenBao or
moto where backends matter) and asserts the outside world: which tokens MotherDuck lists
as live, which token each backend serves (and whether that token works), exit statuses
and what the command printed.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import wait_until
from tests.support.rotator_cli import CliSetup, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username

T0 = "2030-01-01T00:00:00+00:00"
T_LATE = "2030-01-01T03:00:00+00:00"  # past a 1h grace started at T0


def file_table(path: str) -> str:
    return f'type = "file"\npath = "{path}"'


class Account:
    """One adopted account with a file backend (plus any extra backend tables)."""

    def __init__(
        self,
        sim: Any,
        tmp_path: Path,
        *,
        policy: str = "",
        extra_tables: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
        seed_extra: Any = None,
    ) -> None:
        self.sim = sim
        self.user = unique_username()
        self.old_secret, self.old_id = sim.seed(self.user, token_name="initial")
        self.tables = [file_table(f"secrets/{self.user}.json"), *(extra_tables or [])]
        self.cli = CliSetup(
            tmp_path,
            sim.url,
            sim.admin_token,
            [self.user],
            {self.user: list(self.tables)},
            policy=policy,
            extra_env=extra_env or {},
        ).write()
        seed_file(self.cli.secret_file(self.user), self.old_secret, self.old_id)
        if seed_extra is not None:
            seed_extra(self.old_secret, self.old_id)
        done = self.cli.run("adopt", self.user, "--token-id", self.old_id)
        assert done.returncode == 0, done.stderr

    def run(self, *args: str, now: str | None = None) -> Any:
        env = self.cli.env(ROTATOR_NOW=now) if now else None
        done = self.cli.run(*args, env=env)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def set_tables(self, tables: list[str]) -> None:
        self.cli.backend_tables[self.user] = tables
        self.cli.write()

    def served(self) -> dict[str, Any]:
        return read_secret(self.cli.secret_file(self.user))

    def live(self) -> set[str]:
        return set(self.sim.live_token_ids(self.user))

    def works(self, secret: str) -> bool:
        return bool(self.sim.whoami(secret) == self.user)

    def run_doc(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.cli.state_dir / "runs" / f"{run_id}.json").read_text())

    def start_grace(self) -> dict[str, Any]:
        """rotate --force with a 1h grace at T0: the run waits in awaiting_revoke."""
        done = self.run("rotate", self.user, "--force", "--json", now=T0)
        assert done.returncode == 0, done.stdout + done.stderr
        [result] = json_lines(done.stdout)
        assert result["state"] == "awaiting_revoke"
        return dict(result)


GRACE = 'revoke_grace = "1h"'


class TestAbortAfterRevokeWasSent:
    def test_abort_refused_once_the_old_token_revoke_was_sent(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """Issue 14.1: the DELETE of the old token commits but its answer is lost, five times
        over, so the run needs attention; `abort` refuses (it would roll the backend back onto
        the revoked token), and `rotate` finishes: a live token is served throughout."""
        a = Account(simulator, tmp_path)
        simulator.add_fault(route="revoke_token", action="drop_after_commit", username=a.user)
        first = a.run("rotate", a.user, "--force", "--json")
        assert first.returncode == 3, first.stdout + first.stderr
        [result] = json_lines(first.stdout)
        run_id, new_id = result["run_id"], result["new_token_id"]
        assert a.live() == {new_id}  # the old token is gone: its DELETE committed
        simulator.clear_faults()
        simulator.add_fault(route="revoke_token", action="error", status=409, username=a.user)
        codes = [a.run("rotate", a.user).returncode for _ in range(4)]
        assert codes[-1] == 4, codes
        assert a.run_doc(run_id)["state"] == "failed_needs_attention"

        abort = a.run("abort", run_id)
        assert abort.returncode == 2, abort.stdout + abort.stderr
        assert "already sent the revoke" in abort.stderr
        assert f"rotator rotate {a.user}" in abort.stderr
        assert a.served()["token_id"] == new_id
        assert a.works(a.served()["motherduck_token"])
        assert a.live() == {new_id}

        simulator.clear_faults()
        done = a.run("rotate", a.user, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json_lines(done.stdout)[0]["state"] == "completed"
        assert a.live() == {new_id} and a.served()["token_id"] == new_id


class TestRevokeGuard:
    def test_new_token_revoked_during_grace_keeps_the_old_one(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """Issue 14.2: the new token is revoked by hand during the grace; `rotate --revoke-now`
        must not revoke the old one too. It names the real cause and `rotator abort RUN`, which
        then puts the backend back on the old token (exit 0)."""
        a = Account(simulator, tmp_path, policy=GRACE)
        result = a.start_grace()
        run_id, new_id = result["run_id"], result["new_token_id"]
        assert simulator.api("DELETE", f"/v1/users/{a.user}/tokens/{new_id}").status_code == 200

        done = a.run("rotate", a.user, "--revoke-now", "--json", now=T_LATE)
        assert done.returncode == 4, done.stdout + done.stderr
        [out] = json_lines(done.stdout)
        assert out["result"] == "needs_attention"
        assert f"new token {new_id} is no longer live" in out["message"]
        assert f"rotator abort {run_id}" in out["message"]
        assert "still listed after revoke" not in done.stdout + done.stderr
        assert a.live() == {a.old_id}
        assert a.works(a.old_secret)

        status = a.run("status", now=T_LATE)
        assert f"run {run_id} needs attention" in status.stdout
        assert f"still to do: run `rotator abort {run_id}`" in status.stdout
        history = a.run("history", a.user)
        assert f"still to do: run `rotator abort {run_id}`" in history.stdout

        abort = a.run("abort", run_id, "--json", now=T_LATE)
        assert abort.returncode == 0, abort.stdout + abort.stderr
        [aborted] = json_lines(abort.stdout)
        assert aborted["result"] == "aborted"
        assert a.served()["token_id"] == a.old_id
        assert a.works(a.served()["motherduck_token"])
        assert a.live() == {a.old_id}
        status = a.run("status", now=T_LATE)
        assert "needs attention" not in status.stdout

    def test_backend_changed_after_promote_blocks_the_revoke(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A backend rewritten by hand during the grace: the old token stays, and the
        message names that backend and what to run."""
        a = Account(simulator, tmp_path, policy=GRACE)
        result = a.start_grace()
        new_id = result["new_token_id"]
        other_secret, other_id = simulator.seed(a.user, token_name="by-hand")
        seed_file(a.cli.secret_file(a.user), other_secret, other_id)
        done = a.run("rotate", a.user, "--json", now=T_LATE)
        assert done.returncode == 4, done.stdout + done.stderr
        message = json_lines(done.stdout)[0]["message"]
        assert f"no longer serves the new token {new_id}" in message
        assert f"file:{a.cli.secret_file(a.user)}" in message
        assert f"rotator drift {a.user}" in message
        assert a.old_id in a.live() and a.works(a.old_secret)
        # Put the new token back: the next pass finishes the rotation.
        new_secret = next(
            t["secret"] for t in simulator.tokens(a.user) if t["id"] == new_id
        )
        seed_file(a.cli.secret_file(a.user), new_secret, new_id)
        done = a.run("rotate", a.user, "--json", now=T_LATE)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json_lines(done.stdout)[0]["state"] == "completed"
        assert a.old_id not in a.live() and new_id in a.live()


class TestAbortAfterPromote:
    def test_abort_during_grace_refuses_and_names_the_finishing_command(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """Issue 14.3: during the grace both tokens are live and the backend serves the new
        one; `abort` would revoke what consumers hold, so it refuses (exit 2) and the command
        it names finishes the rotation."""
        a = Account(simulator, tmp_path, policy=GRACE)
        result = a.start_grace()
        run_id, new_id = result["run_id"], result["new_token_id"]
        abort = a.run("abort", run_id, now=T0)
        assert abort.returncode == 2, abort.stdout + abort.stderr
        assert f"rotator rotate {a.user} --revoke-now" in abort.stderr
        assert a.live() == {a.old_id, new_id}
        assert a.served()["token_id"] == new_id

        done = a.run("rotate", a.user, "--revoke-now", "--json", now=T0)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json_lines(done.stdout)[0]["state"] == "completed"
        assert a.live() == {new_id}

    def test_abort_before_promote_rolls_back_and_exits_0(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A run killed while verifying is aborted: the file is back on the old token, the
        new token is revoked, and a successful abort exits 0 with result `aborted`."""
        a = Account(simulator, tmp_path, policy='checks = ["readback", "simulator"]')
        run_id = kill_while_verifying(a, simulator)
        before_abort = a.served()
        assert before_abort["token_id"] == a.old_id  # the file backend stages aside
        abort = a.run("abort", run_id, "--json")
        assert abort.returncode == 0, abort.stdout + abort.stderr
        [out] = json_lines(abort.stdout)
        assert out["result"] == "aborted"
        assert a.live() == {a.old_id}
        assert a.served()["token_id"] == a.old_id and a.works(a.old_secret)


def kill_while_verifying(a: Account, simulator: Any) -> str:
    """Start `rotate --force`, SIGKILL it once its run is verifying; return the run id."""
    simulator.add_fault(route="whoami", action="delay", seconds=20)
    proc = a.cli.start("rotate", a.user, "--force")
    try:
        wait_until(
            lambda: any(r["state"] == "verifying" for r in a.cli.runs()),
            timeout=60,
            what="the run to reach verifying",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        simulator.clear_faults()
    [run] = [r for r in a.cli.runs() if r["state"] == "verifying"]
    return str(run["run_id"])


class TestConfigEditedUnderARun:
    def test_backend_removed_before_promote(
        self, simulator: Any, openbao_server: Any, kv_path: str, tmp_path: Path
    ) -> None:
        """Issue 14.4: Vault leaves the config while a run is unfinished. `rotate` and `abort`
        name it and the flag that skips it (no KeyError); with the flag the rest rolls back."""
        bao = openbao_server
        vault = f'type = "vault"\nurl = "{bao.url}"\npath = "{kv_path}"\ntimeout = 3'

        def seed_vault(secret: str, token_id: str) -> None:
            bao.root_client().secrets.kv.v2.create_or_update_secret(
                kv_path, {"motherduck_token": secret, "token_id": token_id}
            )

        a = Account(
            simulator,
            tmp_path,
            policy='checks = ["readback", "simulator"]',
            extra_tables=[vault],
            extra_env={"VAULT_TOKEN": bao.root_token},
            seed_extra=seed_vault,
        )
        run_id = kill_while_verifying(a, simulator)
        run = a.run_doc(run_id)
        new_id = run["new_token"]["id"]
        vault_label = next(label for label in run["backends"] if label.startswith("vault:"))
        a.set_tables(a.tables[:1])  # the Vault table is gone from the config

        resumed = a.run("rotate", a.user)
        assert resumed.returncode == 4, resumed.stdout + resumed.stderr
        assert f"resuming run {run_id} from verifying" in resumed.stderr
        assert vault_label in resumed.stdout + resumed.stderr
        assert f"--skip-backend {vault_label}" in resumed.stdout + resumed.stderr
        status = a.run("status")
        assert f"run {run_id} needs attention" in status.stdout and vault_label in status.stdout

        abort = a.run("abort", run_id)
        assert abort.returncode == 2, abort.stdout + abort.stderr
        assert f"--skip-backend {vault_label}" in abort.stderr
        assert a.live() == {a.old_id, new_id}  # nothing was touched

        abort = a.run("abort", run_id, "--skip-backend", vault_label, "--json")
        assert abort.returncode == 0, abort.stdout + abort.stderr
        assert json_lines(abort.stdout)[0]["result"] == "aborted"
        assert a.served()["token_id"] == a.old_id and a.works(a.old_secret)
        assert a.live() == {a.old_id}
        assert a.run_doc(run_id)["backends"][vault_label]["state"] == "skipped"

    def test_backend_removed_during_grace_lets_the_revoke_finish(
        self, simulator: Any, openbao_server: Any, kv_path: str, tmp_path: Path
    ) -> None:
        """A backend that left the config after promote already serves the new token: the
        revoke goes ahead and that backend keeps a working token."""
        bao = openbao_server
        vault = f'type = "vault"\nurl = "{bao.url}"\npath = "{kv_path}"\ntimeout = 3'

        def seed_vault(secret: str, token_id: str) -> None:
            bao.root_client().secrets.kv.v2.create_or_update_secret(
                kv_path, {"motherduck_token": secret, "token_id": token_id}
            )

        a = Account(
            simulator,
            tmp_path,
            policy=GRACE,
            extra_tables=[vault],
            extra_env={"VAULT_TOKEN": bao.root_token},
            seed_extra=seed_vault,
        )
        new_id = a.start_grace()["new_token_id"]
        a.set_tables(a.tables[:1])
        done = a.run("rotate", a.user, "--json", now=T_LATE)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json_lines(done.stdout)[0]["state"] == "completed"
        vault_value = bao.root_client().secrets.kv.v2.read_secret_version(
            kv_path, raise_on_deleted_version=True
        )["data"]["data"]
        assert vault_value["token_id"] == new_id
        assert a.works(vault_value["motherduck_token"])
        assert a.live() == {new_id}

    def test_backend_added_during_grace_names_the_next_step(
        self, simulator: Any, aws: Any, tmp_path: Path
    ) -> None:
        """An AWS secret added to the config mid-grace: the revoke is held back (the old token
        stays live), the message names the secret and the next step, status shows it; taking
        the table out again lets the run finish."""
        a = Account(simulator, tmp_path, policy=GRACE, extra_env=aws.env)
        new_id = a.start_grace()["new_token_id"]
        secret_id = f"md/{a.user}"
        aws.client("secretsmanager").create_secret(
            Name=secret_id,
            SecretString=json.dumps({"motherduck_token": a.old_secret, "token_id": a.old_id}),
        )
        aws_table = textwrap.dedent(
            f"""\
            type = "aws-secrets-manager"
            secret_id = "{secret_id}"
            region = "{aws.region}"
            endpoint_url = "{aws.endpoint_url}\""""
        )
        a.set_tables([*a.tables, aws_table])
        done = a.run("rotate", a.user, "--json", now=T_LATE)
        assert done.returncode == 4, done.stdout + done.stderr
        message = json_lines(done.stdout)[0]["message"]
        assert "was added to the config after run" in message and secret_id in message
        assert "remove it from the config until" in message
        assert a.old_id in a.live() and a.works(a.old_secret)
        status = a.run("status", now=T_LATE)
        assert "was added to the config" in status.stdout

        a.set_tables(a.tables)
        done = a.run("rotate", a.user, "--json", now=T_LATE)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json_lines(done.stdout)[0]["state"] == "completed"
        assert a.live() == {new_id}


CRASHY = '''
"""A backend plugin with a bug: promote raises KeyError while a marker file exists."""
from pathlib import Path
from typing import Any, ClassVar

from backends.base import BackendConfig
from backends.file import FileBackend


class CrashyConfig(BackendConfig):
    path: str


class CrashyBackend:
    Config: ClassVar[type[BackendConfig]] = CrashyConfig

    def __init__(self, inner: FileBackend) -> None:
        self.inner = inner

    @classmethod
    def from_config(cls, config: Any, *, account: str, base_dir: Path) -> "CrashyBackend":
        cfg = CrashyConfig.model_validate(config) if isinstance(config, dict) else config
        return cls(FileBackend.from_config({"type": "file", "path": cfg.path}, account=account,
                                           base_dir=base_dir))

    @property
    def label(self) -> str:
        return "crashy:" + str(self.inner.path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def promote(self, receipt: Any, *, run_id: str) -> None:
        if self.inner.path.with_name("BUG").exists():
            raise KeyError("plugin-bug")
        self.inner.promote(receipt, run_id=run_id)
'''


def install_crashy_plugin(root: Path) -> str:
    """A `crashy` backend registered through a dist-info on PYTHONPATH; returns that path."""
    plugins = root / "plugins"
    dist = plugins / "crashy_backend-0.1.dist-info"
    dist.mkdir(parents=True)
    (plugins / "crashy_backend.py").write_text(CRASHY)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: crashy-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[rotator.backends]\ncrashy = crashy_backend:CrashyBackend\n"
    )
    return str(plugins)


class TestContainment:
    def test_one_account_crash_is_one_line_and_the_others_go_on(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A plugin's KeyError in one account of a fleet pass: that account's row names the
        run and the cause (no traceback), the run records it, the other account rotates."""
        import os

        plugins = install_crashy_plugin(tmp_path)
        good, bad = unique_username(), unique_username()
        secrets = {u: simulator.seed(u, token_name="initial") for u in (good, bad)}
        tables = {
            good: [file_table(f"secrets/{good}.json")],
            bad: [f'type = "crashy"\npath = "secrets/{bad}.json"'],
        }
        cli = CliSetup(tmp_path, simulator.url, simulator.admin_token, [good, bad], tables)
        search = [plugins, *filter(None, [os.environ.get("PYTHONPATH")])]
        cli.extra_env = {"PYTHONPATH": os.pathsep.join(search)}
        cli.write()
        for user, (secret, token_id) in secrets.items():
            seed_file(cli.secret_file(user), secret, token_id)
            assert cli.run("adopt", user, "--token-id", token_id).returncode == 0
        (tmp_path / "secrets" / "BUG").write_text("")

        done = cli.run("rotate", "--all", "--force", "--json")
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 4, done.stdout + done.stderr
        rows = {row["account"]: row for row in json_lines(done.stdout)}
        assert rows[good]["state"] == "completed"
        assert simulator.live_token_ids(good) == {rows[good]["new_token_id"]}
        bad_row = rows[bad]
        assert bad_row["result"] == "needs_attention"
        assert "unexpected KeyError" in bad_row["message"] and bad in bad_row["message"]
        [run] = [r for r in cli.runs() if r["account"] == bad]
        assert run["run_id"] in bad_row["message"]
        assert run["state"] == "failed_needs_attention"
        assert "unexpected KeyError" in run["failure"]
        # The bad account still serves a working token (the old one: promote never ran).
        served = read_secret(cli.secret_file(bad))
        assert simulator.whoami(served["motherduck_token"]) == bad
        history = cli.run("history", bad)
        assert f"run {run['run_id']} needs attention" in history.stdout

        # Fixed (the bug is gone): the next pass retries; before promote that rolls back.
        (tmp_path / "secrets" / "BUG").unlink()
        again = cli.run("rotate", bad, "--json")
        assert again.returncode == 1, again.stdout + again.stderr
        assert json_lines(again.stdout)[0]["state"] == "rolled_back"
        assert simulator.live_token_ids(bad) == {secrets[bad][1]}


class TestRevokeCommand:
    def test_revokes_an_orphan_and_confirms_it_gone(self, simulator: Any, tmp_path: Path) -> None:
        """Issue 14.9: an unknown live token reported by drift is revoked by `rotator revoke`."""
        a = Account(simulator, tmp_path)
        _, orphan = simulator.seed(a.user, token_name="leftover")
        done = a.run("revoke", a.user, orphan, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        [out] = json_lines(done.stdout)
        assert out["result"] == "revoked" and out["revoked"] is True
        assert a.live() == {a.old_id}
        drift = a.run("drift", "--json")
        assert drift.returncode == 0, drift.stdout

    def test_refuses_referenced_tokens_unless_forced(self, simulator: Any, tmp_path: Path) -> None:
        """The state's current token (also served by the file) is refused; --force revokes."""
        a = Account(simulator, tmp_path)
        done = a.run("revoke", a.user, a.old_id)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "current token" in done.stderr and "--force" in done.stderr
        assert a.live() == {a.old_id}
        gone = a.run("revoke", a.user, "no-such-token")
        assert gone.returncode == 2 and "not a live token" in gone.stderr
        forced = a.run("revoke", a.user, a.old_id, "--force")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert a.live() == set()

    def test_refuses_a_token_only_a_backend_serves(self, simulator: Any, tmp_path: Path) -> None:
        """A token the state store does not know, pasted into the file by hand, is refused."""
        a = Account(simulator, tmp_path)
        other_secret, other_id = simulator.seed(a.user, token_name="pasted")
        seed_file(a.cli.secret_file(a.user), other_secret, other_id)
        done = a.run("revoke", a.user, other_id)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "served by backend file:" in done.stderr
        assert other_id in a.live()


class TestDriftFingerprint:
    def test_hand_edit_of_the_value_alone_is_reported(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """Issue 14.10: only `motherduck_token` is changed (to a revoked token), `token_id`
        left alone: drift reports it as critical."""
        a = Account(simulator, tmp_path)
        first = a.run("rotate", a.user, "--force", "--json")
        assert first.returncode == 0, first.stderr
        second = a.run("rotate", a.user, "--force", "--json")
        assert second.returncode == 0, second.stderr
        first_id = json_lines(first.stdout)[0]["new_token_id"]
        first_secret = next(
            t["secret"] for t in simulator.tokens(a.user, live_only=False) if t["id"] == first_id
        )
        assert not a.works(first_secret)  # revoked by the second rotation
        value = a.served()
        value["motherduck_token"] = first_secret
        a.cli.secret_file(a.user).write_text(json.dumps(value))
        drift = a.run("drift", "--json")
        assert drift.returncode == 1, drift.stdout + drift.stderr
        [report] = json_lines(drift.stdout)
        found = {(f["severity"], f["code"]) for f in report["findings"]}
        assert ("critical", "backend_on_dead_token") in found
        [finding] = [f for f in report["findings"] if f["code"] == "backend_on_dead_token"]
        assert f"says token_id {value['token_id']}" in finding["message"]
        assert first_id in finding["message"]
        assert first_secret not in drift.stdout + drift.stderr

    def test_value_no_run_recorded_is_reported(self, simulator: Any, tmp_path: Path) -> None:
        """A value that is no token rotator recorded, under a recorded token_id: critical."""
        a = Account(simulator, tmp_path)
        assert a.run("rotate", a.user, "--force").returncode == 0
        stranger, _ = simulator.seed(unique_username())
        value = a.served()
        value["motherduck_token"] = stranger
        a.cli.secret_file(a.user).write_text(json.dumps(value))
        drift = a.run("drift", "--json")
        assert drift.returncode == 1
        [report] = json_lines(drift.stdout)
        codes = {(f["severity"], f["code"]) for f in report["findings"]}
        assert ("critical", "backend_value_mismatch") in codes


class TestSmallThings:
    def test_duplicate_names_are_one_account(self, simulator: Any, tmp_path: Path) -> None:
        """`rotate U U` rotates U once and prints one row."""
        a = Account(simulator, tmp_path)
        done = a.run("rotate", a.user, a.user, "--force", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        rows = json_lines(done.stdout)
        assert len(rows) == 1
        assert a.live() == {rows[0]["new_token_id"]}


@pytest.fixture(autouse=True)
def _no_faults_left(simulator: Any) -> Any:
    yield
    simulator.clear_faults()
