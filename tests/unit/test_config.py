"""Config loading: valid shapes, and one clear field-path error per mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotator.config import load_config, parse_config
from rotator.errors import ConfigError

GOOD = """
[motherduck]
api_url = "http://127.0.0.1:8765/"
admin_token_env = "MD_ADMIN"

[state]
path = "state"

[defaults]
ttl = "90d"
rotate_after = "30d"
revoke_grace = "1h"
checks = ["readback", {type = "simulator", attempts = 3, interval = "1s"}]

[[accounts]]
username = "svc_analytics"
rotate_after = "7d"
  [[accounts.backends]]
  type = "file"
  path = "secrets/svc_analytics.json"
"""


def parse(text: str):
    return parse_config(text, base_dir=Path("/etc/rotator"), source="rotator.toml")


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


class TestValidConfig:
    def test_full_shape(self) -> None:
        """Every documented section parses into typed values, overrides win over defaults."""
        config = parse(GOOD)
        assert config.motherduck.api_url == "http://127.0.0.1:8765"
        assert config.motherduck.admin_token_env == "MD_ADMIN"
        assert config.state_path == Path("/etc/rotator/state")
        account = config.account("SVC_ANALYTICS")
        assert account.policy.rotate_after == timedelta(days=7)
        assert account.policy.ttl == timedelta(days=90)
        assert account.policy.revoke_grace == timedelta(hours=1)
        assert [c.type for c in account.policy.checks] == ["readback", "simulator"]
        assert account.policy.checks[1].attempts == 3
        assert account.backends[0].type == "file"

    def test_defaults(self) -> None:
        """A minimal config gets safe defaults: readback check, no grace, 30d cadence."""
        config = parse(
            '[[accounts]]\nusername = "svc_a"\n[[accounts.backends]]\ntype = "file"\npath = "x"\n'
        )
        policy = config.accounts[0].policy
        assert policy.rotate_after == timedelta(days=30)
        assert policy.revoke_grace == timedelta(0)
        assert [c.type for c in policy.checks] == ["readback"]
        assert config.state.store == "file"

    def test_load_from_file_resolves_relative_paths(self, tmp_path: Path) -> None:
        """The state path is relative to the config file's directory, not the cwd."""
        path = tmp_path / "rotator.toml"
        path.write_text(GOOD)
        assert load_config(path).state_path == tmp_path / "state"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[motherduck]\napi_url = 'ftp://x'\n", "motherduck.api_url: must be an http(s) URL"),
        (
            "[motherduck]\nadmin_token_env = 'not valid'\n",
            "motherduck.admin_token_env: must be an environment variable name",
        ),
        ("[motherduck]\nbogus = 1\n", "motherduck.bogus: unknown field"),
        ("[motherduck]\ncreate_settle = '11m'\n", "motherduck.create_settle: must be between"),
        ("[state]\nstore = 'redis'\n", "state.store:"),
        ("[defaults]\nttl = '10s'\n", "defaults.ttl: must be between 300s and 365d"),
        ("[defaults]\nrotate_after = 'soon'\n", "defaults.rotate_after: 'soon' is not a duration"),
        ("[defaults]\ntoken_type = 'admin'\n", "defaults.token_type:"),
        ("[defaults]\nlease_ttl = '5s'\n", "defaults.lease_ttl: must be at least 30s"),
        (
            "[[accounts]]\nusername = 'svc-bad'\n[[accounts.backends]]\ntype='file'\npath='x'\n",
            "accounts[0].username: must be 3-255 characters",
        ),
        (
            "[[accounts]]\nusername = 'svc_a'\nbackends = []\n",
            "accounts[0].backends: List should have at least 1 item",
        ),
        (
            "[[accounts]]\nusername = 'svc_a'\nrotate_aftr = '1d'\n[[accounts.backends]]\ntype='file'\npath='x'\n",
            "accounts[0].rotate_aftr: unknown field",
        ),
        (
            "[[accounts]]\nusername = 'svc_a'\n[[accounts.backends]]\ntype='nosuch'\n",
            "accounts[0].backends[0].type: unknown backend type 'nosuch'",
        ),
        (
            "[[accounts]]\nusername = 'svc_a'\n[[accounts.backends]]\ntype='file'\n",
            "accounts[0].backends[0].path: Field required",
        ),
        (
            "[[accounts]]\nusername = 'svc_a'\n[[accounts.backends]]\ntype='file'\npath='x'\nextra=1\n",
            "accounts[0].backends[0].extra: unknown field",
        ),
        (
            "[[accounts]]\nusername = 'svc_a'\n[[accounts.backends]]\ntype='file'\npath='x'\n[[accounts]]\nusername = 'SVC_A'\n[[accounts.backends]]\ntype='file'\npath='y'\n",
            "accounts[1].username: 'SVC_A' is configured twice",
        ),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_each_mistake_names_its_field(text: str, expected: str) -> None:
    """Each invalid field gives a one-line error starting with its path."""
    message = str(error_of(text))
    assert expected in message
    assert "\n" not in message


def test_every_problem_is_kept() -> None:
    """Several mistakes are all reported (for `config validate`), the first in the message."""
    error = error_of("[defaults]\nttl = '1s'\nrotate_after = 'x'\n")
    assert len(error.problems) == 2
    assert "(and 1 more" in str(error)


def test_missing_file(tmp_path: Path) -> None:
    """A missing config file names the path and how to point at another."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_account() -> None:
    """Asking for an account that is not configured lists the configured ones."""
    with pytest.raises(ConfigError, match="configured: svc_analytics"):
        parse(GOOD).account("svc_other")
