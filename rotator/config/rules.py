"""The rules across keys and tables, checked once every table has validated on its own.

Checks that build, `ttl` against `rotate_before_expiry`, `lease_ttl` against the
`[motherduck]` create_settle and timeout, and against each hook's and check's timeout (a
step that outlasts the lease lets a second run in while it still runs). Both loaders
(rotator/config/fast.py and rotator/config/slow.py) call these in the same order, so a
file gets the same problems whichever read it. They read attributes only: a pydantic
model or its plain twin (rotator/config/types.py) will do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from rotator.durations import format_duration
from rotator.errors import ConfigError

if TYPE_CHECKING:
    from rotator.config.types import MotherDuckSettings, Policy

# A token that comes due sooner than this after it is made is replaced by every run.
MIN_TOKEN_LIFE = timedelta(days=1)


def check_lease_timing(
    policy: Policy, where: str, md: MotherDuckSettings, problems: list[str]
) -> None:
    from rotator.state.lease import lease_timing_problem

    problem = lease_timing_problem(policy.lease_ttl, md.create_settle, md.timeout)
    if problem:
        problems.append(f"{where}.lease_ttl: {problem}")


def step_budget(lease_ttl: timedelta) -> timedelta:
    """How long one hook or one check attempt may take. The run checks its lease just
    before each (`RunContext._fence`); the store renews a lease that has less than
    lease_ttl / RENEW_BELOW (half) left, so each starts with at least that much of it."""
    from rotator.state.lease import RENEW_BELOW

    return lease_ttl / RENEW_BELOW


def check_checks(policy: Policy, where: str, api_url: str, problems: list[str]) -> None:
    """Build each check once so a bad type or option fails at load, before anything runs.

    `readback` without options (the default, and most configs' only check) has nothing
    that could fail to build: it is not built, so a load that needs no other check (a
    Lambda's scheduled pass) does not import rotator.verify.checks (~5 ms of a cold start).
    """
    specs = [
        (i, spec)
        for i, spec in enumerate(policy.checks)
        if spec.type != "readback" or spec.options
    ]
    if not specs:
        return
    from rotator.verify.checks import build_check

    for i, spec in specs:
        try:
            build_check(spec.type, spec.options, api_url=api_url)
        except ConfigError as exc:
            problems.append(f"{where}.checks[{i}]: {exc}")


def check_step_timeouts(policy: Policy, where: str, api_url: str, problems: list[str]) -> None:
    """Each hook's timeout and each check's (per attempt) below half of lease_ttl.

    The run checks its lease just before a hook and before each attempt of a check that
    sends the token out (`step_budget`); a longer one could let another run take the
    account over while it still runs. A check that does not build is reported by
    `check_checks`; here it is skipped.
    """
    budget = step_budget(policy.lease_ttl)
    lease = format_duration(policy.lease_ttl)
    why = (
        "the lease is checked just before it and then has at least half its time left; "
        "one that ran longer could let another run take the account over while it still "
        "runs. Raise lease_ttl or shorten the timeout"
    )
    for point in ("after_store", "after_promote", "after_revoke", "on_failure"):
        spec = getattr(policy.hooks, point)
        if spec is not None and spec.timeout >= budget:
            problems.append(
                f"{where}.hooks.{point}.timeout: {format_duration(spec.timeout)} must be "
                f"shorter than half of lease_ttl ({lease}): {why}"
            )
    specs = [(i, s) for i, s in enumerate(policy.checks) if s.type != "readback"]
    if not specs:
        return
    from rotator.verify.checks import build_check

    for i, spec in specs:
        try:
            check = build_check(spec.type, spec.options, api_url=api_url)
        except ConfigError:
            continue
        timeout = getattr(check, "timeout", None)  # the built-ins'; a plugin may have none
        if isinstance(timeout, int | float) and timeout >= budget.total_seconds():
            problems.append(
                f"{where}.checks[{i}]: {spec.type} check: timeout: {timeout:g}s must be "
                f"shorter than half of lease_ttl ({lease}): {why}"
            )


def check_policy(policy: Policy, where: str, problems: list[str]) -> None:
    """Refuse a policy under which every run rotates: a ttl'd token due as soon as made.

    A token is due `rotate_before_expiry` before it expires, so it serves for
    `ttl - rotate_before_expiry`; below MIN_TOKEN_LIFE each run (hourly under Lambda,
    daily under cron) mints a new one. A short `rotate_after` is a deliberate choice.
    """
    if policy.ttl is None:
        return
    life = policy.ttl - policy.rotate_before_expiry
    if life < MIN_TOKEN_LIFE:
        problems.append(
            f"{where}.ttl: {format_duration(policy.ttl)} must exceed rotate_before_expiry "
            f"({format_duration(policy.rotate_before_expiry)}) by at least "
            f"{format_duration(MIN_TOKEN_LIFE)}, or each token is due "
            f"{format_duration(max(life, timedelta(0)))} after it is made and every run "
            "rotates; raise ttl or lower rotate_before_expiry"
        )
