"""Connectivity checks: does the token *as read back from a backend* actually work?

The workflow reads every backend's staged value back and requires it to match the new
token's fingerprint (that is the `readback` check, always on); then each configured check
runs once per backend copy, with `attempts` and `interval` for eventually consistent
consumers. A check raises CheckFailed naming itself and the backend, never the secret;
`run_check` turns any other exception into CheckFailed, so the run rolls back. HTTP checks
read at most `MAX_CHECK_BODY` bytes within a wall-clock deadline (`rotator.util.httpbound`).

Built-in types: `readback`, `simulator`, `http`, `command`, and `duckdb`/`postgres`
(in sql.py); more register through the
`rotator.checks` entry-point group (a class with `from_options(options, *, api_url)`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rotator.errors import CheckFailed, ConfigError
from rotator.motherduck.parse import Malformed, load_json, object_
from rotator.netpolicy import check_aws_region, insecure_reason
from rotator.secret import Secret
from rotator.verify.check import Check, CheckContext
from rotator.verify.childproc import ChildTimedOut, child_env, run_child
from rotator.verify.options import Options

__all__ = [
    "Check",
    "CheckContext",
    "CommandCheck",
    "HttpCheck",
    "ReadbackCheck",
    "SimulatorCheck",
    "build_check",
    "run_check",
    "run_with_attempts",
]


MAX_CHECK_BODY = 64 * 1024


class ReadbackCheck:
    """The read-back itself (fingerprint match) is done by the workflow for every backend."""

    name = "readback"

    def run(self, ctx: CheckContext) -> None:
        if not ctx.token:
            raise CheckFailed(
                f"{ctx.backend} returned an empty token", check=self.name, backend=ctx.backend
            )


class SimulatorCheck:
    """Ask the simulator's data plane who the token belongs to (`SELECT current_user`)."""

    name = "simulator"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/_sim/whoami"
        self.timeout = timeout
        self.shown = shown_url(self.url)

    def run(self, ctx: CheckContext) -> None:
        import httpx  # start-up: only a run that checks pays for httpx

        from rotator.util.httpbound import TooLarge

        _warn_if_insecure(self.name, self.url)
        try:
            status, body = _request("GET", self.url, ctx.token, self.timeout, MAX_CHECK_BODY)
        except (httpx.HTTPError, TooLarge) as exc:
            raise self._fail(ctx, f"cannot read {self.shown}: {_why(exc)}") from None
        if status != 200:
            raise self._fail(ctx, f"{self.shown} answered {status}")
        try:
            user = object_(load_json(body)).get("current_user")
        except Malformed as exc:
            why = f"{self.shown} answered 200 with an unexpected body ({exc})"
            raise self._fail(ctx, why) from None
        if not isinstance(user, str) or user.lower() != ctx.account.lower():
            from rotator.log import scrub  # structlog: not for a config load building checks

            shown = scrub(user, 60, keep="head") if isinstance(user, str) else type(user).__name__
            raise self._fail(ctx, f"token belongs to {shown!r}, expected {ctx.account!r}")

    def _fail(self, ctx: CheckContext, why: str) -> CheckFailed:
        return CheckFailed(
            f"simulator check on {ctx.backend}'s copy failed: {why}",
            check=self.name,
            backend=ctx.backend,
        )


class HttpCheck:
    """Request a URL with the token as a Bearer header and expect a status (body unread)."""

    name = "http"

    def __init__(
        self, url: str, expect_status: int = 200, method: str = "GET", timeout: float = 10.0
    ) -> None:
        self.url, self.expect_status, self.method, self.timeout = (
            url,
            expect_status,
            method,
            timeout,
        )
        self.shown = shown_url(url)

    def run(self, ctx: CheckContext) -> None:
        import httpx

        _warn_if_insecure(self.name, self.url)
        try:
            status, _ = _request(self.method, self.url, ctx.token, self.timeout, 0)
        except httpx.HTTPError as exc:
            raise CheckFailed(
                f"http check on {ctx.backend}'s copy: cannot reach {self.shown}: {_why(exc)}",
                check=self.name,
                backend=ctx.backend,
            ) from None
        if status != self.expect_status:
            raise CheckFailed(
                f"http check on {ctx.backend}'s copy: {self.method} {self.shown} answered "
                f"{status}, expected {self.expect_status}",
                check=self.name,
                backend=ctx.backend,
            )


def _request(
    method: str, url: str, token: Secret, timeout: float, limit: int
) -> tuple[int, bytes]:
    """One request with the token as Bearer, a wall-clock deadline and at most `limit` bytes."""
    import httpx

    from rotator.util.httpbound import DeadlineTransport, deadline, read_capped

    with httpx.Client(timeout=timeout, transport=DeadlineTransport()) as client, deadline(timeout):
        request = client.build_request(
            method,
            url,
            headers={"Authorization": f"Bearer {token.reveal()}", "Accept-Encoding": "identity"},
        )
        response = client.send(request, stream=True)
        try:
            return response.status_code, read_capped(response, limit) if limit else b""
        finally:
            response.close()


def shown_url(url: str) -> str:
    """`url` for messages and logs: its query (which may hold a key) shown as `?...`."""
    base, sep, _ = url.partition("?")
    return base.partition("#")[0] + ("?..." if sep else "")


def _warn_if_insecure(check: str, url: str) -> None:
    """Each run that sends the token over plain http (allowed with `insecure = true`) says so."""
    why = insecure_reason(url)
    if why:
        import structlog  # a run's: a config load building checks logs nothing

        structlog.get_logger("rotator.checks").warning(
            "check.insecure_url", check=check, url=shown_url(url), why=why
        )


def _why(exc: Exception) -> str:
    from rotator.util.httpbound import TooLarge

    return f"{type(exc).__name__}" + (f" ({exc})" if isinstance(exc, TooLarge) else "")


class CommandCheck:
    """Run a command with the token in MOTHERDUCK_TOKEN (never on its command line).

    It gets a minimal environment (`rotator.verify.childproc.child_env`): never the admin token or
    a backend credential. Exit status 0 passes; otherwise its output, redacted and then
    bounded, is in the error.
    """

    name = "command"

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if not argv:
            raise ConfigError("command check: `command` must be a non-empty list")
        self.argv, self.timeout, self.env = list(argv), timeout, dict(env or {})
        # Relative commands (./smoke-test.sh) mean "next to the config", not "wherever cron ran".
        self.cwd = cwd

    def run(self, ctx: CheckContext) -> None:
        env = child_env(
            listed=self.env,
            facts={"account": ctx.account, "backend": ctx.backend, "token_id": ctx.token_id},
            token=ctx.token,
        )
        try:
            done = run_child(self.argv, env=env, cwd=self.cwd, timeout=self.timeout)
        except ChildTimedOut:
            raise CheckFailed(
                f"command check on {ctx.backend}'s copy timed out after {self.timeout}s",
                check=self.name,
                backend=ctx.backend,
            ) from None
        except OSError as exc:
            raise CheckFailed(
                f"command check cannot run {self.argv[0]!r}: {exc.strerror}",
                check=self.name,
                backend=ctx.backend,
            ) from None
        if done.returncode != 0:
            raise CheckFailed(
                f"command check on {ctx.backend}'s copy exited {done.returncode}: {done.output}",
                check=self.name,
                backend=ctx.backend,
            )


def build_check(
    type_name: str, options: Mapping[str, Any], *, api_url: str, base_dir: Path | None = None
) -> Check:
    """Construct a check from its config table. Raises ConfigError on unknown types/options,
    and on an option of a built-in check that is not what it takes (rotator.verify.options)."""
    builder = _BUILT_IN.get(type_name)
    if builder is not None:
        opts = Options(type_name, options)
        check = builder(opts, api_url, base_dir)
        opts.done()
        return check
    # Installed plugins are looked up only for a type that is not built in: importing
    # importlib.metadata and reading every distribution's entry points costs milliseconds
    # a config of built-in checks does not need.
    from importlib.metadata import entry_points

    for ep in entry_points(group="rotator.checks"):
        if ep.name == type_name:
            plugin: Check = ep.load().from_options(dict(options), api_url=api_url)
            return plugin
    raise ConfigError(
        f"unknown check type {type_name!r} "
        "(built in: readback, simulator, http, command, duckdb, postgres)"
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _readback(opts: Options, api_url: str, base_dir: Path | None) -> Check:
    return ReadbackCheck()


def _simulator(opts: Options, api_url: str, base_dir: Path | None) -> Check:
    # Without `url`, the configured api_url (already held to the TLS rule as itself).
    url = opts.url("url", None, example="http://127.0.0.1:8080")
    return SimulatorCheck(url=url or api_url, timeout=opts.seconds("timeout", 10.0))


def _http(opts: Options, api_url: str, base_dir: Path | None) -> Check:
    return HttpCheck(
        url=opts.url("url", example="https://my-service/health"),
        expect_status=opts.integer("expect_status", 200, low=100, high=599),
        method=opts.choice("method", "GET", _METHODS),
        timeout=opts.seconds("timeout", 10.0),
    )


def _command(opts: Options, api_url: str, base_dir: Path | None) -> Check:
    if isinstance(opts.peek("command"), str):
        raise ConfigError(
            "command check: `command` must be a list of strings, not a shell string"
        )
    return CommandCheck(
        opts.strings("command"),
        timeout=opts.seconds("timeout", 60.0),
        env=opts.string_table("env"),
        cwd=base_dir,
    )


def _duckdb(opts: Options, api_url: str, base_dir: Path | None) -> Check:
    from rotator.verify.sql import DuckDBCheck

    return DuckDBCheck(
        database=opts.text("database", "md:"),
        autoinstall=opts.flag("autoinstall", True),
        timeout=opts.seconds("timeout", 60.0),
    )


def _postgres(opts: Options, api_url: str, base_dir: Path | None) -> Check:
    from rotator.verify.sql import PostgresCheck, tls_refusal

    region = opts.text("region", "us-east-1")
    try:
        check_aws_region(region)  # MotherDuck's regions are AWS's; the host is built of it
    except ValueError as exc:
        raise opts.error("region", str(exc)) from None
    host = opts.text("host", None)
    sslmode = opts.choice("sslmode", "verify-full", PostgresCheck.SSLMODES)
    why = tls_refusal(host, sslmode, insecure=opts.flag("insecure", False))
    if why:
        raise opts.error("sslmode", why)
    return PostgresCheck(
        region=region,
        host=host,
        port=opts.integer("port", 5432, low=1, high=65535),
        dbname=opts.text("dbname", "md:"),
        sslmode=sslmode,
        timeout=opts.seconds("timeout", 10.0),
    )


_BUILT_IN: dict[str, Callable[[Options, str, Path | None], Check]] = {
    "readback": _readback,
    "simulator": _simulator,
    "http": _http,
    "command": _command,
    "duckdb": _duckdb,
    "postgres": _postgres,
}


def run_check(check: Check, ctx: CheckContext) -> None:
    """Run a check once; any exception it raises is a failed check (CheckFailed), one line.

    A plugin's bug or a server's odd answer must roll the run back like any failure, not
    leave it stuck in `verifying` with the new token staged.
    """
    try:
        check.run(ctx)
    except CheckFailed:
        raise
    except Exception as exc:
        from rotator.log import scrub  # structlog: not for a config load building checks

        detail = " ".join(scrub(str(exc), 200, keep="head").split())
        raise CheckFailed(
            f"{check.name} check on {ctx.backend}'s copy raised {type(exc).__name__}"
            + (f": {detail}" if detail else ""),
            check=check.name,
            backend=ctx.backend,
        ) from None


def run_with_attempts(
    check: Check,
    ctx: CheckContext,
    *,
    attempts: int,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    before: Callable[[], None] = lambda: None,
) -> None:
    """Run a check up to `attempts` times, `interval` seconds apart; re-raise the last failure.

    `before()` runs ahead of each attempt: the engine's lease check and renewal, so that
    an attempt starts with at least `config.rules.step_budget` of its lease left.
    """
    for attempt in range(1, attempts + 1):
        before()
        try:
            run_check(check, ctx)
            return
        except CheckFailed:
            if attempt == attempts:
                raise
            sleep(interval)
