"""Shared pytest configuration: fixture modules for each real server live in tests/support."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.support.simulator_fixtures",
    "tests.support.openbao_fixtures",
    "tests.support.moto_fixtures",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run slow tests (full crash harness)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow; run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
