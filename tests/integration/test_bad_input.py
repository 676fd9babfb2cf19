"""Bad input: every mistake ends in one line on stderr naming the cause, the documented
exit status (README "Exit status") and no change anywhere.

"No change" is checked from outside: the simulator's token list for the account, the
backend's file bytes, the state directory's files (leases aside) and the simulator's
request log (no POST/PUT/DELETE at all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Rig, RunResult, make_rig, record_counts, report_dir, sim_mutations
from tests.support.procs import free_port
from tests.support.simulator_fixtures import unique_username

# (id, [(old, new) text replacements in the config], expected text on stderr, exit status)
# {user} is the account, {api} the simulator URL, {dead} a closed loopback port.
FILE_TABLE = 'type = "file"\npath = "secrets/{user}.json"\nformat = "json"'
CONFIG_CASES: list[tuple[str, list[tuple[str, str]], str, int]] = [
    ("toml-syntax", [("[defaults]", "[defaults")], "not valid TOML", 2),
    ("toml-duplicate-key", [('[state]\n', '[state]\npath = "x"\n')], "not valid TOML", 2),
    ("api_url-scheme", [('api_url = "{api}"', 'api_url = "ftp://x"')], "motherduck.api_url", 2),
    ("api_url-type", [('api_url = "{api}"', "api_url = 8")], "motherduck.api_url", 2),
    ("admin_token_env", [('"TEST_MD_ADMIN"', '"1-not-a-name"')], "admin_token_env", 2),
    ("md-timeout", [("[motherduck]\n", '[motherduck]\ntimeout = "soon"\n')], "motherduck.timeout", 2),
    ("md-create_settle", [('create_settle = "5s"', 'create_settle = "1h"')], "motherduck.create_settle", 2),
    ("md-unknown-key", [("[motherduck]\n", "[motherduck]\nretries = 3\n")], "motherduck.retries", 2),
    ("state-store", [("[state]\n", '[state]\nstore = "redis"\n')], "state.store", 2),
    ("state-path-type", [('path = "state"', "path = 5")], "state.path", 2),
    ("dynamodb-no-table", [("[state]\n", '[state]\nstore = "dynamodb"\n')], "state.table", 2),
    ("token_type", [("[defaults]\n", '[defaults]\ntoken_type = "admin"\n')], "defaults.token_type", 2),
    ("ttl-range", [("[defaults]\n", '[defaults]\nttl = "10s"\n')], "defaults.ttl", 2),
    ("ttl-unit", [("[defaults]\n", '[defaults]\nttl = "3 fortnights"\n')], "defaults.ttl", 2),
    ("rotate_after", [("[defaults]\n", "[defaults]\nrotate_after = true\n")], "defaults.rotate_after", 2),
    ("revoke_grace", [("[defaults]\n", '[defaults]\nrevoke_grace = "-1h"\n')], "defaults.revoke_grace", 2),
    ("lease_ttl-floor", [("[defaults]\n", '[defaults]\nlease_ttl = "5s"\n')], "defaults.lease_ttl", 2),
    ("confirm_revoked", [("[defaults]\n", '[defaults]\nconfirm_revoked = "yes please"\n')], "defaults.confirm_revoked", 2),
    ("defaults-unknown", [("[defaults]\n", "[defaults]\nrotate_every = 3\n")], "defaults.rotate_every", 2),
    ("check-unknown-type", [("[defaults]\n", '[defaults]\nchecks = ["readback", "telepathy"]\n')], "defaults.checks[1]", 2),
    ("check-attempts", [("[defaults]\n", '[defaults]\nchecks = [{type = "simulator", attempts = 0}]\n')], "defaults.checks", 2),
    ("check-http-no-url", [("[defaults]\n", '[defaults]\nchecks = [{type = "http"}]\n')], "defaults.checks[0]", 2),
    ("hook-unknown", [("[defaults]\n", '[defaults]\nhooks = {before_create = {command = ["true"]}}\n')], "defaults.hooks", 2),
    ("username-invalid", [('username = "{user}"', 'username = "bad-name!"')], "accounts[0].username", 2),
    ("username-missing", [('username = "{user}"\n', "")], "accounts[0].username", 2),
    ("account-unknown-key", [('username = "{user}"\n', 'username = "{user}"\nretention = 3\n')], "accounts[0].retention", 2),
    ("account-ttl-override", [('username = "{user}"\n', 'username = "{user}"\nttl = "400d"\n')], "accounts[0].ttl", 2),
    ("account-duplicate", [(FILE_TABLE, FILE_TABLE + '\n\n[[accounts]]\nusername = "{user}"\n  [[accounts.backends]]\n' + FILE_TABLE)], "configured twice", 2),
    ("no-backends", [("  [[accounts.backends]]\n" + FILE_TABLE, "backends = []")], "accounts[0].backends", 2),
    ("backend-unknown-type", [('type = "file"', 'type = "etcd"')], "etcd", 2),
    ("backend-no-type", [('type = "file"\n', "")], "accounts[0].backends[0]", 2),
    ("file-no-path", [('path = "secrets/{user}.json"\n', "")], "accounts[0].backends[0].path", 2),
    ("file-format", [('format = "json"', 'format = "yaml"')], "accounts[0].backends[0].format", 2),
    ("file-unknown-key", [('format = "json"', 'format = "json"\nmode = "0644"')], "accounts[0].backends[0].mode", 2),
    ("vault-url", [(FILE_TABLE, 'type = "vault"\nurl = "vault.example:8200"\npath = "md/x"')], "accounts[0].backends[0].url", 2),
    ("vault-no-path", [(FILE_TABLE, 'type = "vault"\nurl = "http://127.0.0.1:1"')], "accounts[0].backends[0].path", 2),
    ("vault-auth-method", [(FILE_TABLE, 'type = "vault"\nurl = "http://127.0.0.1:1"\npath = "md/x"\nauth = {method = "ldap"}')], "accounts[0].backends[0].auth", 2),
    ("aws-no-secret_id", [(FILE_TABLE, 'type = "aws-secrets-manager"\nregion = "us-east-1"')], "accounts[0].backends[0].secret_id", 2),
    ("aws-no-region", [(FILE_TABLE, 'type = "aws-secrets-manager"\nsecret_id = "md/x"')], "region", 2),
    ("aws-arn-region", [(FILE_TABLE, 'type = "aws-secrets-manager"\nregion = "eu-west-1"\nsecret_id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:md-x-AbCdEf"')], "does not match", 2),
]

# Reaching a service that is not there: nothing has changed yet, so exit 1 (README).
UNREACHABLE_CASES: list[tuple[str, list[tuple[str, str]], str, int]] = [
    ("motherduck-closed-port", [('api_url = "{api}"', 'api_url = "http://127.0.0.1:{dead}"')], "127.0.0.1:{dead}", 1),
    ("vault-closed-port", [(FILE_TABLE, FILE_TABLE + '\n  [[accounts.backends]]\ntype = "vault"\nurl = "http://127.0.0.1:{dead}"\npath = "md/{user}"\ntimeout = 2')], "127.0.0.1:{dead}", 1),
    ("aws-closed-port", [(FILE_TABLE, FILE_TABLE + '\n  [[accounts.backends]]\ntype = "aws-secrets-manager"\nsecret_id = "md/{user}"\nregion = "us-east-1"\nendpoint_url = "http://127.0.0.1:{dead}"')], "127.0.0.1:{dead}", 1),
    ("motherduck-wrong-route", [('api_url = "{api}"', 'api_url = "{api}/api"')], "api_url", 2),
]

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}

EXPECTED = {case[0]: case[3] for case in CONFIG_CASES + UNREACHABLE_CASES}


def error_lines(stderr: str) -> list[str]:
    """stderr lines that are not JSON log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]


def assert_one_line_error(done: RunResult, expect: str, code: int) -> None:
    assert done.code == code, (done.code, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("rotator: error: "), lines
    assert expect in lines[0], lines


@pytest.fixture(scope="module")
def counts(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tally: dict[str, Any] = {"kind": "bad_input", "cases": 0, "passed": [], "violations": []}
    yield tally
    tally["violation_count"] = len(tally["violations"])
    directory = report_dir(tmp_path_factory.getbasetemp() / "reliability")
    record_counts(directory, "bad-input", tally)


@pytest.fixture
def rig(simulator: Any, tmp_path: Path) -> Rig:
    return make_rig(simulator, tmp_path)


def unchanged(rig: Rig, before: dict[str, Any]) -> None:
    assert rig.snapshot() == before
    assert sim_mutations(rig.sim) == []
    assert rig.i5_violations() == []


def broken_config(rig: Rig, replacements: list[tuple[str, str]], dead: int) -> None:
    text = rig.cli.config_path.read_text()
    def fill(t: str) -> str:
        return t.replace("{user}", rig.user).replace("{api}", rig.sim.url).replace(
            "{dead}", str(dead)
        )

    for old, new in replacements:
        old, new = fill(old), fill(new)
        assert old in text, (old, text)
        text = text.replace(old, new, 1)
    rig.cli.config_path.write_text(text)


@pytest.mark.parametrize(
    ("replacements", "expect", "code"),
    [pytest.param(r, e, c, id=i) for i, r, e, c in CONFIG_CASES + UNREACHABLE_CASES],
)
def test_bad_config(
    rig: Rig,
    counts: dict[str, Any],
    request: pytest.FixtureRequest,
    replacements: list[tuple[str, str]],
    expect: str,
    code: int,
) -> None:
    """Each config field wrong in turn (or pointing at nothing): one line, exit, no change."""
    counts["cases"] += 1
    dead = free_port()
    broken_config(rig, replacements, dead)
    rig.cli.extra_env.update(FAKE_AWS)  # credentials present, so the endpoint is what fails
    rig.cli.extra_env["VAULT_TOKEN"] = "unused-token"  # unset, it would be a usage error (2)
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force", timeout=180)
    assert_one_line_error(done, expect.format(dead=dead), code)
    unchanged(rig, before)
    counts["passed"].append(request.node.callspec.id)


def test_missing_config_file(rig: Rig, counts: dict[str, Any]) -> None:
    counts["cases"] += 1
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force", ROTATOR_CONFIG=str(rig.cli.root / "nope.toml"))
    assert_one_line_error(done, "nope.toml", 2)
    unchanged(rig, before)
    counts["passed"].append("missing-config-file")


@pytest.mark.parametrize("kind", ["garbage", "revoked", "service-account", "read-scaling"])
def test_bad_admin_token(rig: Rig, counts: dict[str, Any], kind: str) -> None:
    """A wrong, revoked, non-admin or read-scaling admin token: exit 2 naming it, no change."""
    counts["cases"] += 1
    sim = rig.sim
    if kind == "garbage":
        token = "not-a-token"
    elif kind == "revoked":
        admin = unique_username("admin")
        token, token_id = sim.seed(admin, admin=True)
        assert sim.api("DELETE", f"/v1/users/{admin}/tokens/{token_id}").status_code == 200
    elif kind == "service-account":
        token, _ = sim.seed(unique_username())
    else:
        token, _ = sim.seed(unique_username("admin"), admin=True, token_type="read_scaling")
    before = rig.snapshot()
    sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force", TEST_MD_ADMIN=token)
    expect = {
        "garbage": "admin token was rejected",
        "revoked": "admin token was rejected",
        "service-account": "org_admin",
        "read-scaling": "read_scaling",
    }[kind]
    assert_one_line_error(done, expect, 2)
    unchanged(rig, before)
    counts["passed"].append(f"admin-token-{kind}")


def test_invalid_and_unknown_usernames(rig: Rig, counts: dict[str, Any]) -> None:
    """A name not in the config, a syntactically invalid one, and one MotherDuck lacks."""
    counts["cases"] += 3
    before = rig.snapshot()
    rig.sim.clear_requests()
    for name in ("svc_not_configured", "bad-name!"):
        done = rig.run("rotate", name, "--force")
        assert_one_line_error(done, name, 2)
    unchanged(rig, before)
    # Configured, valid, but MotherDuck has no such user: JSON 404 on the first read.
    ghost = unique_username("ghost")
    text = rig.cli.config_path.read_text().replace(rig.user, ghost)
    rig.cli.config_path.write_text(text)
    done = rig.run("rotate", ghost, "--force")
    assert_one_line_error(done, ghost, 2)
    unchanged(rig, before)
    counts["passed"] += ["username-not-configured", "username-invalid", "username-unknown"]


def test_adopt_foreign_or_unknown_token(rig: Rig, counts: dict[str, Any]) -> None:
    """adopt with another account's token id, or an id that does not exist: exit 2."""
    counts["cases"] += 2
    _, foreign_id = rig.sim.seed(unique_username())
    before = rig.snapshot()
    rig.sim.clear_requests()
    for token_id in (foreign_id, "00000000-0000-4000-8000-000000000000"):
        done = rig.run("adopt", rig.user, "--token-id", token_id)
        assert_one_line_error(done, token_id, 2)
    unchanged(rig, before)
    counts["passed"] += ["adopt-foreign-token", "adopt-unknown-token"]


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file", "key-is-a-directory"])
def test_unusable_state_directory(rig: Rig, counts: dict[str, Any], where: str) -> None:
    """A state path that even root cannot use: exit 2 naming the directory, nothing minted.

    Root ignores permission bits, so the path is made unusable structurally: a component
    is a regular file, the path itself is a file, or the key file is a directory.
    """
    counts["cases"] += 1
    blocker = rig.cli.root / "blocker"
    if where == "under-a-file":
        blocker.write_text("not a directory")
        state = "blocker/state"
    elif where == "is-a-file":
        blocker.write_text("not a directory")
        state = "blocker"
    else:
        (blocker / "key").mkdir(parents=True)
        state = "blocker"
    text = rig.cli.config_path.read_text().replace('path = "state"', f'path = "{state}"')
    rig.cli.config_path.write_text(text)
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force")
    assert_one_line_error(done, "state", 2)
    assert "blocker" in error_lines(done.stderr)[0]
    unchanged(rig, before)
    assert rig.sim.requests() == [] or all(r["method"] == "GET" for r in rig.sim.requests())
    counts["passed"].append(f"state-dir-{where}")


def test_corrupt_state_file(rig: Rig, counts: dict[str, Any]) -> None:
    """A corrupt account record: exit 2 naming the file, nothing minted, file kept."""
    counts["cases"] += 1
    path = rig.cli.state_dir / "accounts" / f"{rig.user}.json"
    path.write_text("{not json")
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force")
    assert_one_line_error(done, "corrupt", 2)
    unchanged(rig, before)
    assert json.dumps(before["state"], default=str) == json.dumps(
        rig.snapshot()["state"], default=str
    )
    counts["passed"].append("state-file-corrupt")
