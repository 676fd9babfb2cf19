"""Shared pytest configuration: fixture modules for each real server live in tests/support."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

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


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo any test's logging setup (the Lambda handler or the CLI run in-process).

    Their setup writes to the stream pytest captured for that test, which is closed
    afterwards: left in place, it makes a later test's first log line raise
    "I/O operation on closed file", depending on test order.
    """
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
