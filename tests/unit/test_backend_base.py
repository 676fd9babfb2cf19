"""backends.base's value checks for backend configs (the Vault models and the fast loader
use them; a plugin's Config may): each returns the value or says what is wrong with it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from backends.base import env_name, printable, slash_path


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (env_name, "VAULT TOKEN", "must be an environment variable name"),
        (env_name, "1X", "must be an environment variable name"),
        (env_name, "", "must be an environment variable name"),
        (printable, "", "must not be empty"),
        (printable, "role\n", "must not contain control characters"),
        (slash_path, "md/../sys", "must not have empty, '.' or '..' segments"),
        (slash_path, "md//x", "must not have empty, '.' or '..' segments"),
        (slash_path, ".", "must not have empty, '.' or '..' segments"),
    ],
)
def test_config_value_checks_refuse(check: Any, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check(value)


def test_config_value_checks_keep_good_values() -> None:
    assert env_name("VAULT_TOKEN") == "VAULT_TOKEN"
    assert printable("md-role") == "md-role"
    assert slash_path("teams/data/md") == "teams/data/md"
