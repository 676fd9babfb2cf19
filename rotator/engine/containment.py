"""Containment: an unexpected exception in one account's run becomes one recorded line.

A bug in rotator or in a plugin (a `KeyError`, an `AttributeError` from a backend) must
not take down a pass over many accounts nor reach a person as a traceback. `contain()`
records the cause in the account's unfinished run (state `failed_needs_attention`, with
the next steps, so `status` and `history` show it) and returns a `NeedsAttention` naming
the account, the run and the cause, secrets scrubbed.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from rotator.engine.runrecord import RunState
from rotator.errors import NeedsAttention, RotatorError

if TYPE_CHECKING:
    from rotator.engine.runcontext import RunContext

__all__ = ["contain", "contained", "describe"]

log = structlog.get_logger("rotator.workflow")
MAX_CAUSE = 300


def contain(runner: RunContext | None, account: str, exc: Exception) -> NeedsAttention:
    """Record `exc` in the account's unfinished run (if any) and say it in one line."""
    cause = describe(exc)
    run = None
    remaining: list[str] = []
    if runner is not None:
        try:
            run = runner._active_run()
            if run is not None:
                remaining = [
                    f"look into the cause ({cause}); then `rotator rotate {account}` retries "
                    f"(it rolls back before promote and finishes after), or "
                    f"`rotator abort {run.run_id}`"
                ]
                run.failure, run.remaining = cause, remaining
                runner._transition(run, RunState.FAILED_NEEDS_ATTENTION, cause)
        except Exception as again:  # the store itself may be what broke
            log.error("run.crash_unrecorded", error=describe(again))
    where = f"run {run.run_id}" if run is not None else "no unfinished run"
    log.error("run.crashed", run_id=run.run_id if run else None, error=cause)
    return NeedsAttention(
        f"account {account}, {where}: {cause}"
        + (f"; recorded in the run (`rotator history {account}`)" if run is not None else ""),
        remaining=remaining,
    )


@contextlib.contextmanager
def contained(account: str) -> Iterator[None]:
    """For an account's work outside its lease (reads only): the same one line, no record."""
    try:
        yield
    except RotatorError:
        raise
    except Exception as exc:
        raise contain(None, account, exc) from None


def describe(exc: BaseException) -> str:
    """`Type: message (at file.py:line)`, one line, secrets scrubbed, bounded in length."""
    from rotator.log import RedactSecrets

    frames = traceback.extract_tb(exc.__traceback__)
    at = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = " ".join(f"unexpected {type(exc).__name__}: {exc}".split())
    text = RedactSecrets().redact(text)
    if len(text) > MAX_CAUSE:
        text = text[: MAX_CAUSE - 3] + "..."
    return text + at
