"""Built-in checks' options (rotator.verify.options): typed at load, one line naming the
check and the option when wrong, and the TLS rule for checks that send the new token."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from rotator.errors import CheckFailed, ConfigError
from rotator.secret import Secret
from rotator.verify.check import CheckContext
from rotator.verify.checks import HttpCheck, SimulatorCheck, build_check, shown_url

API = "http://127.0.0.1:9"


def build(kind: str, options: dict[str, Any]) -> Any:
    return build_check(kind, options, api_url=API)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("http", {}, "http check: url is required"),
        ("http", {"url": 8}, "http check: url: must be an http(s) URL"),
        ("http", {"url": "ftp://svc/health"}, "http check: url: must be an http(s) URL"),
        ("http", {"url": "http://svc.example/health"}, "http check: url: plain http to a non-loopback host would send the new token in clear"),
        ("http", {"url": "https://user:pw@svc/health"}, "http check: url: must not hold a user name or password"),
        ("http", {"url": "https://svc/he alth"}, "http check: url: must not contain spaces"),
        ("http", {"url": "https://svc/h", "expect_status": "200"}, "http check: expect_status: must be a whole number from 100 to 599"),
        ("http", {"url": "https://svc/h", "expect_status": 99}, "expect_status: must be a whole number"),
        ("http", {"url": "https://svc/h", "expect_status": True}, "expect_status: must be a whole number"),
        ("http", {"url": "https://svc/h", "method": "FETCH"}, "http check: method: must be one of GET, HEAD"),
        ("http", {"url": "https://svc/h", "timeout": "soon"}, "http check: timeout: "),
        ("http", {"url": "https://svc/h", "timeout": -1}, "http check: timeout: must be above 0"),
        ("http", {"url": "https://svc/h", "timeout": 7200}, "at most 3600s"),
        ("http", {"url": "https://svc/h", "insecure": "yes"}, "http check: insecure: must be true or false"),
        ("http", {"url": "https://svc/h", "expected": 204}, "http check: unknown option(s) expected (it takes expect_status, insecure, method, timeout, url)"),
        ("simulator", {"url": "http://sim.example"}, "simulator check: url: plain http to a non-loopback host"),
        ("simulator", {"timeout": 0}, "simulator check: timeout: must be above 0"),
        ("simulator", {"attempt": 3}, "simulator check: unknown option(s) attempt"),
        ("readback", {"strict": True}, "readback check: unknown option(s) strict (it takes none)"),
        ("command", {}, "command check: command is required"),
        ("command", {"command": "./smoke.sh --all"}, "`command` must be a list of strings, not a shell string"),
        ("command", {"command": []}, "command check: command: must be a non-empty list of strings"),
        ("command", {"command": ["./smoke.sh", 3]}, "command check: command: must hold non-empty strings only"),
        ("command", {"command": ["x"], "env": "A=1"}, "command check: env: must be a table of strings"),
        ("command", {"command": ["x"], "env": {"A": 1}}, "command check: env: must be a table of strings"),
        ("command", {"command": ["x"], "timeout": "1y"}, "command check: timeout: "),
        ("postgres", {"sslmode": "require"}, "postgres check: sslmode: 'require' does not check the server's certificate"),
        ("postgres", {"sslmode": "disable", "host": "pg.example"}, "postgres check: sslmode: 'disable' does not check"),
        ("postgres", {"sslmode": "sometimes"}, "postgres check: sslmode: must be one of disable"),
        ("postgres", {"region": "eu central"}, "postgres check: region: 'eu central' is not an AWS region name"),
        ("postgres", {"port": 0}, "postgres check: port: must be a whole number from 1 to 65535"),
        ("duckdb", {"autoinstall": "no"}, "duckdb check: autoinstall: must be true or false"),
    ],
)
def test_a_bad_option_is_one_line_naming_the_check_and_the_option(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        build(kind, options)
    text = str(err.value)
    assert text.startswith(message) or message in text, text
    assert "\n" not in text
    assert "pw@" not in text  # a URL's password is never echoed


def test_options_are_typed_as_the_checks_use_them() -> None:
    http = build(
        "http", {"url": "https://svc/health?deep=1", "expect_status": 204, "method": "head",
                 "timeout": "30s"},
    )
    assert (http.url, http.expect_status, http.method, http.timeout) == (
        "https://svc/health?deep=1", 204, "HEAD", 30.0
    )
    command = build("command", {"command": ["./smoke.sh"], "timeout": "2m", "env": {"A": "b"}})
    assert (command.argv, command.timeout, command.env) == (["./smoke.sh"], 120.0, {"A": "b"})
    simulator = build("simulator", {"timeout": 2.5})
    assert (simulator.url, simulator.timeout) == (f"{API}/_sim/whoami", 2.5)
    postgres = build("postgres", {"sslmode": "require", "host": "127.0.0.1"})  # loopback
    assert (postgres.host, postgres.sslmode, postgres.port) == ("127.0.0.1", "require", 5432)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("http", {"url": "http://svc.example/health", "insecure": True}),
        ("http", {"url": "https://svc/health", "insecure": True}),  # harmless with https
        ("http", {"url": "http://localhost:8080/health"}),  # loopback: nothing leaves the host
        ("simulator", {"url": "http://sim.example:8080", "insecure": True}),
        ("postgres", {"sslmode": "require", "insecure": True}),
    ],
)
def test_insecure_true_allows_what_the_tls_rule_refuses(kind: str, options: dict[str, Any]) -> None:
    build(kind, options)


def test_shown_url_hides_the_query() -> None:
    assert shown_url("https://svc/health?key=abc#x") == "https://svc/health?..."
    assert shown_url("https://svc/health") == "https://svc/health"


def ctx() -> CheckContext:
    return CheckContext(
        account="svc_a", backend="file:/x", token=Secret("md-new-token"), token_id="t1"
    )


def test_a_failed_http_check_never_shows_the_query() -> None:
    """The health URL's query may hold a key: the failure says `?...`."""
    check = HttpCheck("http://127.0.0.1:1/health?apikey=s3cr3t-value", timeout=2)
    with pytest.raises(CheckFailed) as err:
        check.run(ctx())
    assert "http://127.0.0.1:1/health?..." in str(err.value)
    assert "s3cr3t" not in str(err.value)


def test_a_check_over_plain_http_to_another_host_warns_each_run() -> None:
    """Allowed with `insecure = true`, and then said at every run, like api_url's."""
    # 0.0.0.0 is not a loopback address by name (so the rule applies), yet a connection to
    # it stays on this host (refused at once): no name lookup, nothing leaves the machine.
    check = build("simulator", {"url": "http://0.0.0.0:1", "insecure": True, "timeout": 1})
    assert isinstance(check, SimulatorCheck)
    with structlog.testing.capture_logs() as logs, pytest.raises(CheckFailed):
        check.run(ctx())
    [warning] = [e for e in logs if e["event"] == "check.insecure_url"]
    assert warning["url"] == "http://0.0.0.0:1/_sim/whoami" and warning["check"] == "simulator"
