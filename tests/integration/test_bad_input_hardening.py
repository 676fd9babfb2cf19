"""Bad input found by trying as an attacker or a careless operator would (issue 15): each is
one line on stderr naming the field, exit 2, no secret echoed and no change anywhere.

Same rig and checks as test_bad_input.py (the simulator's token list, the backend file,
the state files, no mutating request), for the cases added with the hardening work.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_bad_input import FILE_TABLE, assert_one_line_error, broken_config
from tests.support.harness import Rig, make_rig, record_counts, report_dir, sim_mutations
from tests.support.procs import free_port

CASES: list[tuple[str, list[tuple[str, str]], str]] = [
    ("username-trailing-newline", [('username = "{user}"', 'username = "{user}\\n"')], "accounts[0].username"),
    ("state-region", [("[state]\n", '[state]\nregion = "eu-west-1x"\n')], "state.region"),
    ("aws-region", [(FILE_TABLE, 'type = "aws-secrets-manager"\nsecret_id = "md/x"\nregion = "eu-west-1x"')], "accounts[0].backends[0].region"),
    ("aws-arn-region", [(FILE_TABLE, 'type = "aws-secrets-manager"\nsecret_id = "arn:aws:secretsmanager:eu-west-1x:123456789012:secret:md-x-AbCdEf"')], "eu-west-1x"),
    ("api_url-plain-http", [('api_url = "{api}"', 'api_url = "http://api.motherduck.example"')], "motherduck.api_url: plain http"),
    # The command line's client and the Lambda's would each make a different request of
    # these; a password in the URL would be a second admin credential in the file.
    ("api_url-query", [('api_url = "{api}"', 'api_url = "{api}/?region=eu"')], "motherduck.api_url: must not have a query"),
    ("api_url-fragment", [('api_url = "{api}"', 'api_url = "{api}/#v1"')], "motherduck.api_url: must not have a query (?...) or a fragment"),
    ("api_url-userinfo", [('api_url = "{api}"', 'api_url = "https://admin:hunter2-pw@api.motherduck.com"')], "motherduck.api_url: must not hold a user name or password"),
    ("api_url-space", [('api_url = "{api}"', 'api_url = "{api}/v 1"')], "motherduck.api_url: must not contain spaces"),
    ("api_url-dotdot", [('api_url = "{api}"', 'api_url = "{api}/base/.."')], "motherduck.api_url: must not have '.' or '..' path segments"),
    ("api_url-port", [('api_url = "{api}"', 'api_url = "https://api.motherduck.com:99999"')], "motherduck.api_url: has a port that is not a number"),
    # Checks send the new token: the TLS rule holds for them; their options are typed at load.
    ("check-http-plain-http", [("[defaults]\n", '[defaults]\nchecks = [{type = "http", url = "http://svc.example/health"}]\n')], "defaults.checks[0]: http check: url: plain http"),
    ("check-http-status-string", [("[defaults]\n", '[defaults]\nchecks = [{type = "http", url = "https://svc.example/h", expect_status = "200"}]\n')], "defaults.checks[0]: http check: expect_status"),
    ("check-simulator-timeout", [("[defaults]\n", '[defaults]\nchecks = [{type = "simulator", timeout = "soon"}]\n')], "defaults.checks[0]: simulator check: timeout"),
    ("check-command-env", [("[defaults]\n", '[defaults]\nchecks = [{type = "command", command = ["true"], env = "A=1"}]\n')], "defaults.checks[0]: command check: env"),
    ("check-postgres-sslmode", [("[defaults]\n", '[defaults]\nchecks = [{type = "postgres", sslmode = "disable"}]\n')], "defaults.checks[0]: postgres check: sslmode"),
    ("aws-endpoint-plain-http", [(FILE_TABLE, 'type = "aws-secrets-manager"\nsecret_id = "md/x"\nregion = "eu-west-1"\nendpoint_url = "http://sm.example:4566"')], "accounts[0].backends[0].endpoint_url: plain http to a non-loopback host"),
    ("state-endpoint-plain-http", [("[state]\n", '[state]\nendpoint_url = "http://ddb.example:8000"\n')], "state.endpoint_url: plain http to a non-loopback host"),
    ("vault-userinfo", [(FILE_TABLE, 'type = "vault"\nurl = "https://root:hunter2-pw@vault.example:8200"\npath = "md/x"')], "url: must not hold a user name or password"),
    ("vault-query", [(FILE_TABLE, 'type = "vault"\nurl = "https://vault.example:8200/?ns=a"\npath = "md/x"')], "url: must not have a query"),
    ("vault-path-dotdot", [(FILE_TABLE, 'type = "vault"\nurl = "https://vault.example:8200"\npath = "md/../../sys/x"')], "accounts[0].backends[0].path: must not have empty, '.' or '..' segments"),
    ("vault-token-env", [(FILE_TABLE, 'type = "vault"\nurl = "https://vault.example:8200"\npath = "md/x"\nauth = {method = "token", token_env = "VAULT TOKEN"}')], "auth.token.token_env: must be an environment variable name"),
    ("vault-empty-field", [(FILE_TABLE, 'type = "vault"\nurl = "https://vault.example:8200"\npath = "md/x"\nfield = ""')], "accounts[0].backends[0].field: must not be empty"),
    ("state-dynamodb-table", [("[state]\n", '[state]\nstore = "dynamodb"\ntable = "rotator state!"\nregion = "eu-west-1"\n')], "state.table: must be a DynamoDB table name"),
    ("aws-secret-name", [(FILE_TABLE, 'type = "aws-secrets-manager"\nsecret_id = "md/svc x"\nregion = "eu-west-1"')], "accounts[0].backends[0].secret_id: must be a secret name"),
    ("aws-empty-profile", [(FILE_TABLE, 'type = "aws-secrets-manager"\nsecret_id = "md/x"\nregion = "eu-west-1"\nprofile = ""')], "accounts[0].backends[0].profile: must not be empty"),
    ("vault-plain-http", [(FILE_TABLE, 'type = "vault"\nurl = "http://vault.example:8200"\npath = "md/x"')], "url: plain http"),
    ("vault-verify-false", [(FILE_TABLE, 'type = "vault"\nurl = "https://vault.example:8200"\npath = "md/x"\nverify = false')], "verify = false"),
]


@pytest.fixture(scope="module")
def counts(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tally: dict[str, Any] = {"kind": "bad_input_hardening", "cases": 0, "passed": []}
    yield tally
    directory = report_dir(tmp_path_factory.getbasetemp() / "reliability")
    record_counts(directory, "bad-input-hardening", tally)


@pytest.fixture
def rig(simulator: Any, tmp_path: Path) -> Rig:
    return make_rig(simulator, tmp_path)


def unchanged(rig: Rig, before: dict[str, Any]) -> None:
    assert rig.snapshot() == before
    assert sim_mutations(rig.sim) == []
    assert rig.i5_violations() == []


@pytest.mark.parametrize(("replacements", "expect"), [pytest.param(r, e, id=i) for i, r, e in CASES])
def test_bad_config(
    rig: Rig, counts: dict[str, Any], request: pytest.FixtureRequest,
    replacements: list[tuple[str, str]], expect: str,
) -> None:
    """Each newly refused config value: one line naming it, exit 2, no change."""
    counts["cases"] += 1
    broken_config(rig, replacements, free_port())
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force")
    assert_one_line_error(done, expect, 2)
    assert "hunter2" not in done.stdout + done.stderr  # a password in a URL is never echoed
    unchanged(rig, before)
    counts["passed"].append(request.node.callspec.id)


def test_insecure_true_allows_plain_http_and_warns(rig: Rig, counts: dict[str, Any]) -> None:
    """`insecure = true` accepts a non-loopback http api_url; every run warns about it."""
    counts["cases"] += 1
    broken_config(rig, [("[motherduck]\n", '[motherduck]\ninsecure = true\n'),
                        ('api_url = "{api}"', 'api_url = "http://127.0.0.2:{dead}"')], free_port())
    done = rig.run("tokens", rig.user)
    assert "motherduck.insecure_url" not in done.stderr  # 127.0.0.2 is loopback: no warning
    # This machine's own name: not a loopback name, yet nothing leaves the host.
    text = rig.cli.config_path.read_text().replace("127.0.0.2", socket.gethostname())
    rig.cli.config_path.write_text(text)
    done = rig.run("config", "validate")
    assert done.code == 0, done.stderr
    done = rig.run("tokens", rig.user, timeout=60)
    assert "motherduck.insecure_url" in done.stderr
    counts["passed"].append("insecure-true")


@pytest.mark.parametrize("content", ["", "not hex at all", "abcd"])
def test_bad_fingerprint_key_file(rig: Rig, counts: dict[str, Any], content: str) -> None:
    """An empty, non-hex or short state `key` file: a one-line StateError, exit 2, no change."""
    counts["cases"] += 1
    key = rig.cli.state_dir / "key"
    if not key.exists():
        assert rig.run("state", "init").code == 0
    key.write_text(content)
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force")
    assert_one_line_error(done, "fingerprint key is empty or not hex", 2)
    unchanged(rig, before)
    counts["passed"].append(f"key-file-{content[:8] or 'empty'}")


def test_admin_token_with_a_line_break_is_not_echoed(rig: Rig, counts: dict[str, Any]) -> None:
    """An admin token with CR/LF inside: refused without echoing it, exit 2, no change."""
    counts["cases"] += 1
    token = rig.sim.admin_token + "\r\nsecond-line-" + "q" * 30
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force", TEST_MD_ADMIN=token)
    assert_one_line_error(done, "admin token contains whitespace or a control character", 2)
    assert "second-line" not in done.stderr + done.stdout
    assert rig.sim.admin_token not in done.stderr + done.stdout
    unchanged(rig, before)
    counts["passed"].append("admin-token-crlf")


@pytest.mark.parametrize("follow", [False, True])
def test_a_file_backend_path_that_is_not_a_regular_file_is_refused_before_anything(
    rig: Rig, counts: dict[str, Any], tmp_path: Path, follow: bool
) -> None:
    """`path` at a FIFO (or, with follow_symlinks, a link to one): promote's rename would
    replace it with a plain file (as root, a device node such as /dev/null too). The
    preflight refuses it: exit 1, one line naming it, no token minted, nothing written
    beside it, the FIFO still a FIFO."""
    counts["cases"] += 1
    fifo = tmp_path / "consumer.fifo"
    os.mkfifo(fifo)
    target = fifo
    if follow:
        target = tmp_path / "link-to-fifo"
        target.symlink_to(fifo)
    table = f'type = "file"\npath = "{target}"' + ("\nfollow_symlinks = true" if follow else "")
    broken_config(rig, [(FILE_TABLE, table)], free_port())
    before = rig.snapshot()
    rig.sim.clear_requests()
    done = rig.run("rotate", rig.user, "--force")
    assert_one_line_error(done, f"{fifo} is a FIFO, which rotating would replace", 1)
    unchanged(rig, before)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("consumer", "link"))) == (
        ["consumer.fifo", "link-to-fifo"] if follow else ["consumer.fifo"]
    )
    counts["passed"].append(f"not-a-regular-file-{follow}")
