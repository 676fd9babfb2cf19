"""rotator/cli/gcpause.py: the collector paused for start-up, and given back as it was."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rotator import cli
from rotator.cli import gcpause


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
