"""Checks that prove a token by querying MotherDuck: DuckDB (`md:`) and the Postgres endpoint.

Both run `SELECT current_user` with the token read back from a backend and require the
service account's username. Both need MotherDuck's servers, so where MotherDuck is
unreachable they fail with a message that says so. duckdb and psycopg are imported only
when a check runs (extras `duckdb` and `postgres`).
"""

from __future__ import annotations

from typing import Any

from rotator.errors import CheckFailed, ConfigError
from rotator.log import scrub
from rotator.netpolicy import is_loopback
from rotator.verify.check import CheckContext

__all__ = ["DuckDBCheck", "PostgresCheck", "tls_refusal"]


class DuckDBCheck:
    """`duckdb.connect("md:", config={"motherduck_token": ...})` then `SELECT current_user`."""

    name = "duckdb"

    def __init__(
        self, database: str = "md:", autoinstall: bool = True, timeout: float = 60.0
    ) -> None:
        if not database.startswith("md:"):
            raise ConfigError("duckdb check: database must be an md: path such as 'md:'")
        self.database, self.autoinstall, self.timeout = database, autoinstall, timeout

    def run(self, ctx: CheckContext) -> None:
        try:
            import duckdb
        except ImportError:
            raise CheckFailed(
                "duckdb check needs the duckdb package: pip install 'rotator[duckdb]'",
                check=self.name,
                backend=ctx.backend,
            ) from None
        config: dict[str, Any] = {"motherduck_token": ctx.token.reveal()}
        if not self.autoinstall:
            config["autoinstall_known_extensions"] = False
            config["autoload_known_extensions"] = False
        try:
            with duckdb.connect(self.database, config=config) as conn:
                row = conn.execute("SELECT current_user").fetchone()
        except Exception as exc:  # duckdb raises many unrelated types; all mean "did not work"
            raise _unreachable(self.name, ctx, "MotherDuck", exc) from None
        _expect_user(self.name, ctx, row[0] if row else None)


class PostgresCheck:
    """MotherDuck's Postgres endpoint: password = token, `SELECT current_user`."""

    name = "postgres"

    # libpq's modes; only the last two check the server's certificate.
    SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

    def __init__(
        self,
        region: str = "us-east-1",
        host: str | None = None,
        port: int = 5432,
        dbname: str = "md:",
        sslmode: str = "verify-full",
        timeout: float = 10.0,
    ) -> None:
        self.host = host or f"pg.{region}-aws.motherduck.com"
        self.port, self.dbname, self.sslmode, self.timeout = port, dbname, sslmode, timeout

    def run(self, ctx: CheckContext) -> None:
        try:
            import psycopg
        except ImportError:
            raise CheckFailed(
                "postgres check needs psycopg: pip install 'rotator[postgres]'",
                check=self.name,
                backend=ctx.backend,
            ) from None
        try:
            with psycopg.connect(
                host=self.host,
                port=self.port,
                user="postgres",
                password=ctx.token.reveal(),
                dbname=self.dbname,
                sslmode=self.sslmode,
                connect_timeout=max(1, int(self.timeout)),
            ) as conn:
                row = conn.execute("SELECT current_user").fetchone()
        except psycopg.Error as exc:
            raise _unreachable(self.name, ctx, f"{self.host}:{self.port}", exc) from None
        _expect_user(self.name, ctx, row[0] if row else None)


def tls_refusal(host: str | None, sslmode: str, *, insecure: bool) -> str | None:
    """Why `sslmode` toward `host` is refused (None when allowed): the token travels in the
    password field, so a mode without certificate checks to a host other than loopback
    needs `insecure = true`, as plain http does (rotator.netpolicy)."""
    if sslmode in ("verify-ca", "verify-full") or insecure:
        return None
    if host is not None and is_loopback(host):
        return None
    return (
        f"{sslmode!r} does not check the server's certificate and would hand the new token "
        "to anyone on the path; use verify-full, or set insecure = true"
    )


def _unreachable(check: str, ctx: CheckContext, where: str, exc: Exception) -> CheckFailed:
    """The driver's error as one line, with the token masked (drivers may echo it)."""
    lines = str(exc).replace(ctx.token.reveal(), "***").splitlines() or ["no detail"]
    return CheckFailed(
        f"{check} check on {ctx.backend}'s copy could not query {where} "
        f"(is MotherDuck reachable from here?): {type(exc).__name__}: "
        f"{scrub(lines[0], 300, keep='head')}",
        check=check,
        backend=ctx.backend,
    )


def _expect_user(check: str, ctx: CheckContext, user: object) -> None:
    if str(user).lower() != ctx.account.lower():
        raise CheckFailed(
            f"{check} check on {ctx.backend}'s copy: current_user is {user!r}, "
            f"expected {ctx.account!r}",
            check=check,
            backend=ctx.backend,
        )
