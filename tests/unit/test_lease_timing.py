"""Lease timing rules in the config: a lease must outlast a create's settle window."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.config import parse_config
from rotator.errors import ConfigError

BACKEND = '  [[accounts.backends]]\n  type = "file"\n  path = "x"\n'


def config(motherduck: str = "", defaults: str = "", account: str = "") -> str:
    return (
        f"[motherduck]\n{motherduck}\n[defaults]\n{defaults}\n"
        f'[[accounts]]\nusername = "svc"\n{account}\n{BACKEND}'
    )


def test_lease_shorter_than_settle_plus_calls_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(config('create_settle = "60s"', 'lease_ttl = "30s"'), base_dir=Path("."))
    message = str(exc.value)
    assert "defaults.lease_ttl" in message
    assert "create_settle + 3 x timeout (60s + 3 x 10s = 90s)" in message and "got 30s" in message


def test_account_override_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"accounts\[0\].lease_ttl"):
        parse_config(config(account='lease_ttl = "1m"'), base_dir=Path("."))


def test_long_enough_lease_is_accepted() -> None:
    parse_config(config('create_settle = "5s"', 'lease_ttl = "1m"'), base_dir=Path("."))
    parse_config(config(), base_dir=Path("."))  # the defaults: 15m > 60s + 30s
