"""Opt-in checks against the real MotherDuck: skipped unless credentials are given.

Set MOTHERDUCK_LIVE_TOKEN (a workload token of a service account) and
MOTHERDUCK_LIVE_USERNAME (that account's username) to run them. They only read
(`SELECT current_user`); they never create or revoke tokens.
"""

from __future__ import annotations

import os

import pytest

from rotator.secret import Secret
from rotator.verify.checks import CheckContext
from rotator.verify.sql import DuckDBCheck, PostgresCheck

TOKEN = os.environ.get("MOTHERDUCK_LIVE_TOKEN")
USERNAME = os.environ.get("MOTHERDUCK_LIVE_USERNAME")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (TOKEN and USERNAME), reason="set MOTHERDUCK_LIVE_TOKEN and MOTHERDUCK_LIVE_USERNAME"
    ),
]


def ctx() -> CheckContext:
    assert TOKEN and USERNAME
    return CheckContext(USERNAME, "env", Secret(TOKEN), None)


def test_duckdb_check_live() -> None:
    """The duckdb check passes for a real token of the named account."""
    pytest.importorskip("duckdb")
    DuckDBCheck().run(ctx())


def test_postgres_check_live() -> None:
    """The postgres check passes against MotherDuck's Postgres endpoint."""
    pytest.importorskip("psycopg")
    PostgresCheck(region=os.environ.get("MOTHERDUCK_LIVE_REGION", "us-east-1")).run(ctx())
