"""duckdb and postgres checks: where MotherDuck is unreachable they fail clearly, without
the token in the message, and without touching the network beyond loopback."""

from __future__ import annotations

import pytest

from rotator.errors import CheckFailed, ConfigError
from rotator.secret import Secret
from rotator.verify.checks import CheckContext, build_check
from rotator.verify.sql import DuckDBCheck, PostgresCheck
from tests.support.procs import free_port

CTX = CheckContext("svc_a", "file:/x", Secret("eyJsecret.part.sig"), "t1")


def test_duckdb_without_extension_fails_clearly() -> None:
    """With extension autoinstall off (no download), the check names the cause and hides the token."""
    pytest.importorskip("duckdb")
    with pytest.raises(CheckFailed) as info:
        DuckDBCheck(autoinstall=False).run(CTX)
    message = str(info.value)
    assert "duckdb check on file:/x's copy could not query MotherDuck" in message
    assert "eyJsecret" not in message


def test_postgres_unreachable_fails_clearly() -> None:
    """A closed loopback port stands in for an unreachable endpoint: a one-line failure."""
    pytest.importorskip("psycopg")
    port = free_port()
    with pytest.raises(CheckFailed) as info:
        PostgresCheck(host="127.0.0.1", port=port, sslmode="disable", timeout=2).run(CTX)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "reachable" in message
    assert "eyJsecret" not in message and "\n" not in message


def test_sql_checks_build_from_config() -> None:
    """duckdb/postgres are built-in check types with validated options."""
    assert isinstance(build_check("duckdb", {}, api_url="http://x"), DuckDBCheck)
    check = build_check("postgres", {"region": "eu-central-1"}, api_url="http://x")
    assert isinstance(check, PostgresCheck) and check.host == "pg.eu-central-1-aws.motherduck.com"
    with pytest.raises(ConfigError, match="md: path"):
        build_check("duckdb", {"database": "local.db"}, api_url="http://x")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) bogus"):
        build_check("postgres", {"bogus": 1}, api_url="http://x")


@pytest.mark.parametrize("text", ["", "bad token eyJsecret.part.sig\nsecond line"])
def test_driver_errors_become_one_line_without_the_token(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """An empty driver message or one echoing the token still gives one clean line."""
    duckdb = pytest.importorskip("duckdb")

    def refuse(*args: object, **kwargs: object) -> None:
        raise duckdb.IOException(text)

    monkeypatch.setattr(duckdb, "connect", refuse)
    with pytest.raises(CheckFailed) as info:
        DuckDBCheck().run(CTX)
    message = str(info.value)
    assert message.startswith("duckdb check on file:/x's copy could not query MotherDuck")
    assert "eyJsecret" not in message and "\n" not in message
    assert ("no detail" in message) == (text == "")
