"""Connectivity checks: does the token *as read back from a backend* actually work?

The workflow reads every backend's staged value back and requires it to match the new
token's fingerprint (that is the `readback` check, always on); then each configured check
runs once per backend copy, with `attempts` and `interval` for eventually consistent
consumers. A check raises CheckFailed naming itself and the backend, never the secret.

Built-in types: `readback`, `simulator`, `http`, `command`, and `duckdb`/`postgres`
(in checks_sql.py); more register through the
`rotator.checks` entry-point group (a class with `from_options(options, *, api_url)`).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from rotator.errors import CheckFailed, ConfigError
from rotator.secret import Secret

__all__ = [
    "Check",
    "CheckContext",
    "CommandCheck",
    "HttpCheck",
    "ReadbackCheck",
    "SimulatorCheck",
    "build_check",
    "run_with_attempts",
]


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check gets: whose token, which backend's copy, and the copy itself."""

    account: str
    backend: str
    token: Secret
    token_id: str | None


class Check(Protocol):
    name: str

    def run(self, ctx: CheckContext) -> None:
        """Pass silently or raise CheckFailed(check=self.name, backend=ctx.backend)."""
        ...


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

    def run(self, ctx: CheckContext) -> None:
        import httpx  # start-up: only a run that checks pays for httpx

        try:
            response = httpx.get(
                self.url,
                headers={"Authorization": f"Bearer {ctx.token.reveal()}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise self._fail(ctx, f"cannot reach {self.url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise self._fail(ctx, f"{self.url} answered {response.status_code}")
        user = response.json().get("current_user")
        if str(user).lower() != ctx.account.lower():
            raise self._fail(ctx, f"token belongs to {user!r}, expected {ctx.account!r}")

    def _fail(self, ctx: CheckContext, why: str) -> CheckFailed:
        return CheckFailed(
            f"simulator check on {ctx.backend}'s copy failed: {why}",
            check=self.name,
            backend=ctx.backend,
        )


class HttpCheck:
    """Request a URL with the token as a Bearer header and expect a status."""

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

    def run(self, ctx: CheckContext) -> None:
        import httpx

        try:
            response = httpx.request(
                self.method,
                self.url,
                headers={"Authorization": f"Bearer {ctx.token.reveal()}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise CheckFailed(
                f"http check on {ctx.backend}'s copy: cannot reach {self.url}: "
                f"{type(exc).__name__}",
                check=self.name,
                backend=ctx.backend,
            ) from None
        if response.status_code != self.expect_status:
            raise CheckFailed(
                f"http check on {ctx.backend}'s copy: {self.method} {self.url} answered "
                f"{response.status_code}, expected {self.expect_status}",
                check=self.name,
                backend=ctx.backend,
            )


class CommandCheck:
    """Run a command with the token in MOTHERDUCK_TOKEN (never on its command line).

    Exit status 0 passes; otherwise its output, with the token masked, is in the error.
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
        env = {
            **os.environ,
            **self.env,
            "MOTHERDUCK_TOKEN": ctx.token.reveal(),
            "ROTATOR_ACCOUNT": ctx.account,
            "ROTATOR_BACKEND": ctx.backend,
            "ROTATOR_TOKEN_ID": ctx.token_id or "",
        }
        try:
            done = subprocess.run(
                self.argv,
                env=env,
                cwd=self.cwd,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
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
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            output = output.replace(ctx.token.reveal(), "***")[-500:]
            raise CheckFailed(
                f"command check on {ctx.backend}'s copy exited {done.returncode}: {output}",
                check=self.name,
                backend=ctx.backend,
            )


def build_check(
    type_name: str, options: Mapping[str, Any], *, api_url: str, base_dir: Path | None = None
) -> Check:
    """Construct a check from its config table. Raises ConfigError on unknown types/options."""
    opts = dict(options)
    try:
        if type_name == "readback":
            _no_options(type_name, opts)
            return ReadbackCheck()
        if type_name == "simulator":
            return SimulatorCheck(url=str(opts.pop("url", api_url)), **_floats(opts, "timeout"))
        if type_name == "http":
            return HttpCheck(**opts)
        if type_name in ("duckdb", "postgres"):
            from rotator.checks_sql import DuckDBCheck, PostgresCheck

            return DuckDBCheck(**opts) if type_name == "duckdb" else PostgresCheck(**opts)
        if type_name == "command":
            argv = opts.pop("command", None)
            if isinstance(argv, str):
                raise ConfigError(
                    "command check: `command` must be a list of strings, not a shell string"
                )
            return CommandCheck(argv or [], cwd=base_dir, **opts)
    except TypeError as exc:
        raise ConfigError(f"{type_name} check: {exc}") from None
    for ep in entry_points(group="rotator.checks"):
        if ep.name == type_name:
            check: Check = ep.load().from_options(opts, api_url=api_url)
            return check
    raise ConfigError(
        f"unknown check type {type_name!r} "
        "(built in: readback, simulator, http, command, duckdb, postgres)"
    )


def run_with_attempts(
    check: Check,
    ctx: CheckContext,
    *,
    attempts: int,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run a check up to `attempts` times, `interval` seconds apart; re-raise the last failure."""
    for attempt in range(1, attempts + 1):
        try:
            check.run(ctx)
            return
        except CheckFailed:
            if attempt == attempts:
                raise
            sleep(interval)


def _no_options(type_name: str, opts: Mapping[str, Any]) -> None:
    if opts:
        raise ConfigError(f"{type_name} check takes no options (got {', '.join(sorted(opts))})")


def _floats(opts: dict[str, Any], *names: str) -> dict[str, float]:
    out = {name: float(opts.pop(name)) for name in names if name in opts}
    _no_options("simulator", opts)
    return out
