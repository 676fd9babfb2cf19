"""The names outside code depends on keep resolving after the package layout changes.

SAM templates name `rotator.aws_lambda.handler`; the installed `rotator` script calls
`rotator.cli:main`; plugins and configs reach backends through the `rotator.backends`
entry points; a scheduled Lambda event carries the source "rotator.schedule".
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points

import pytest


def _resolve(value: str) -> object:
    module, _, attr = value.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_the_rotator_script_calls_cli_main() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "rotator"]
    assert script.value == "rotator.cli:main"
    assert inspect.isfunction(_resolve(script.value))


def test_the_lambda_handler_is_a_function_of_the_package() -> None:
    """Lambda splits `rotator.aws_lambda.handler` at its last dot: module, then attribute."""
    module = importlib.import_module("rotator.aws_lambda")
    assert inspect.isfunction(module.handler)
    assert inspect.signature(module.handler).parameters.keys() == {"event", "context"}


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("file", "backends.file:FileBackend"),
        ("vault", "backends.vault:VaultBackend"),
        ("aws-secrets-manager", "backends.aws_secrets_manager:SecretsManagerBackend"),
    ],
)
def test_backend_entry_points_load(name: str, target: str) -> None:
    (ep,) = [ep for ep in entry_points(group="rotator.backends") if ep.name == name]
    assert ep.value == target
    assert inspect.isclass(ep.load())


def test_the_built_in_backend_types_are_the_registered_ones() -> None:
    """backends._BUILT_IN (looked up without reading the metadata) and pyproject.toml's
    `rotator.backends` entry points name the same classes."""
    import tomllib
    from pathlib import Path

    import backends

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    registered = tomllib.loads(pyproject.read_text())["project"]["entry-points"]
    assert registered["rotator.backends"] == backends._BUILT_IN


def test_the_scheduled_event_source_is_unchanged() -> None:
    from rotator.aws_lambda.events import SCHEDULE_SOURCES

    assert "rotator.schedule" in SCHEDULE_SOURCES
