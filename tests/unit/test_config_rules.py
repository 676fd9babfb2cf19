"""Rules across keys: a hook or a check attempt must fit in half of lease_ttl.

The run checks its lease just before a hook and before each attempt of a check that sends
the token out; the store renews a lease with less than half its ttl left, so each starts
with at least lease_ttl / 2. A longer timeout could let a second run take the account
over while the hook or check still runs (tests/integration/test_lease_during_checks.py).
Both loaders (the fast one and pydantic's) give the same problems.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.config import parse_config
from rotator.errors import ConfigError

BASE = """
[motherduck]
api_url = "http://127.0.0.1:8765"
admin_token_env = "MD_ADMIN"

[state]
path = "state"

[defaults]
{defaults}

[[accounts]]
username = "svc_analytics"
{account}
  [[accounts.backends]]
  type = "file"
  path = "secrets/svc_analytics.json"
"""


def problems(defaults: str = "", account: str = "") -> list[str]:
    text = BASE.format(defaults=defaults, account=account)
    try:
        parse_config(text, base_dir=Path("/etc/rotator"), source="rotator.toml")
    except ConfigError as exc:
        return list(exc.problems)
    return []


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ('lease_ttl = "2m"\n[defaults.hooks.after_promote]\ncommand = ["x"]\ntimeout = "1m"',
         "defaults.hooks.after_promote.timeout: 1m must be shorter than half of lease_ttl (2m)"),
        ('[defaults.hooks.on_failure]\ncommand = ["x"]\ntimeout = "10m"',
         "defaults.hooks.on_failure.timeout: 10m must be shorter than half of lease_ttl (15m)"),
        ('lease_ttl = "2m"\nchecks = [{type = "command", command = ["x"]}]',
         "defaults.checks[0]: command check: timeout: 60s must be shorter than half of lease_ttl (2m)"),
        ('checks = [{type = "http", url = "https://svc/h", timeout = "8m"}]',
         "defaults.checks[0]: http check: timeout: 480s must be shorter than half of lease_ttl"),
    ],
)
def test_a_step_longer_than_half_the_lease_is_refused(defaults: str, message: str) -> None:
    found = problems(defaults)
    assert any(p.startswith(message) for p in found), found


def test_an_account_override_is_held_to_its_own_lease() -> None:
    """A shorter lease_ttl on one account: its checks are measured against that."""
    found = problems(
        defaults='checks = [{type = "command", command = ["x"], timeout = "2m"}]',
        account='lease_ttl = "3m"',
    )
    assert any(p.startswith("accounts[0].checks[0]: command check: timeout: 120s") for p in found)
    assert not any(p.startswith("defaults.") for p in found), found


@pytest.mark.parametrize(
    "defaults",
    [
        "",  # the defaults: hooks none, checks readback, lease 15m
        '[defaults.hooks.after_promote]\ncommand = ["x"]',  # 60s against 15m
        'lease_ttl = "2m"\nchecks = [{type = "command", command = ["x"], timeout = "59s"}]',
        'lease_ttl = "2m"\n[defaults.hooks.after_store]\ncommand = ["x"]\ntimeout = "59s"',
    ],
)
def test_steps_within_half_the_lease_load(defaults: str) -> None:
    assert problems(defaults) == []


def test_a_hook_timeout_of_zero_is_refused() -> None:
    """It would be stopped before it ran: every run would fail (or roll back) on it."""
    found = problems('[defaults.hooks.after_promote]\ncommand = ["x"]\ntimeout = "0s"')
    assert found == ["defaults.hooks.after_promote.timeout: must be above 0s"]


@pytest.mark.parametrize(
    ("point", "why"),
    [("after_revoke", "the old token is already revoked, there is nothing to roll back to"),
     ("on_failure", "it runs once the run has already failed")],
)
def test_a_rollback_that_cannot_happen_is_refused_when_written(point: str, why: str) -> None:
    """`rollback` is every hook's default and acts as `warn` here; written out, it is an
    expectation the hook cannot meet."""
    found = problems(f'[defaults.hooks.{point}]\ncommand = ["x"]\non_error = "rollback"')
    assert found == [
        f'defaults.hooks.{point}: on_error = "rollback" cannot apply: {why}; use "warn"'
    ]
    assert problems(f'[defaults.hooks.{point}]\ncommand = ["x"]') == []
    assert problems(f'[defaults.hooks.{point}]\ncommand = ["x"]\non_error = "warn"') == []
