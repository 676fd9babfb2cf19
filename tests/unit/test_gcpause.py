"""rotator/util/gcpause.py: the collector paused for start-up, and given back as it was;
the Lambda handler pauses it only in the Lambda runtime and gives it back at the first
invocation, whatever that invocation brings."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rotator import aws_lambda, cli
from rotator.util import gcpause


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


def test_pause_then_resume_freezes_what_start_up_built() -> None:
    gc.enable()
    gc.unfreeze()
    gcpause.pause()
    assert not gc.isenabled()
    gcpause.resume()
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_resume_without_pause_changes_nothing() -> None:
    gc.disable()  # a program that runs without the collector keeps it off
    gc.unfreeze()
    gcpause.resume()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_main_with_argv_leaves_the_collector_alone() -> None:
    """In-process callers (tests, embedding programs) get their collector back untouched."""
    gc.enable()
    gc.unfreeze()
    with pytest.raises(SystemExit):  # --version: argparse prints it and exits
        cli.main(["--version"])
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_handler_pauses_only_in_the_lambda_runtime() -> None:
    """The handler module pauses the collector as it is imported, in Lambda only."""
    code = (
        "import gc, sys; import rotator.aws_lambda; "
        "sys.stdout.write('off' if not gc.isenabled() else 'on')"
    )
    env = {k: v for k, v in os.environ.items() if k != "LAMBDA_TASK_ROOT"}
    outside = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    inside = subprocess.run(
        [sys.executable, "-c", code], env={**env, "LAMBDA_TASK_ROOT": "/var/task"},
        capture_output=True,
    )
    assert (outside.stdout, inside.stdout) == (b"on", b"off"), (outside.stderr, inside.stderr)


def test_a_refused_first_event_still_gives_the_collector_back() -> None:
    """A warm function that only ever receives malformed events must not run without
    its collector for the rest of its life."""
    gc.enable()
    gcpause.pause()  # as the handler's import did in the Lambda runtime
    with pytest.raises(aws_lambda.EventError):
        aws_lambda.handler({"Step": "createSecret"}, None)
    assert gc.isenabled()
