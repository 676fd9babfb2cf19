"""rotator/aws_lambda/gcpause.py: the collector paused for a Lambda cold start only, and
given back at the first invocation whatever that invocation brings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rotator import aws_lambda
from rotator.aws_lambda import gcpause


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()
    gcpause._paused = False


def test_paused_only_in_the_lambda_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.enable()
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    gcpause.pause()
    assert gc.isenabled()  # a program or a test importing the handler keeps its collector
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    gcpause.pause()
    assert not gc.isenabled()
    gcpause.resume()
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_a_refused_first_event_still_gives_the_collector_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A warm function that only ever receives malformed events must not run without
    its collector for the rest of its life."""
    gc.enable()
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    gcpause.pause()
    with pytest.raises(aws_lambda.EventError):
        aws_lambda.handler({"Step": "createSecret"}, None)
    assert gc.isenabled()
