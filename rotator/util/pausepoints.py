"""Test-only stall points: a process that reaches the named point stops itself (SIGSTOP).

The stall harness (tests/integration/test_stall_harness.py) sets `ROTATOR_PAUSE_AT` to one
point name; the process sends itself SIGSTOP the first time it reaches that point, and a
test sends SIGCONT once another run has taken its lease over. Unset (always, outside
tests), `reached()` is one dictionary lookup and does nothing.

Point names: `state:<run state>` right after the checkpoint of a transition, and
`fence:<effect>` right after a lease check passed and just before the effect (the worst
instant to stall: the check said yes, the effect has not happened yet).
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["ENV", "reached"]

ENV = "ROTATOR_PAUSE_AT"
_done: set[str] = set()


def reached(point: str) -> None:
    """Stop this process here if `ROTATOR_PAUSE_AT` names `point` (once per process)."""
    wanted = os.environ.get(ENV)
    if not wanted or point in _done or point != wanted:
        return
    _done.add(point)
    # To this thread: the group stop then begins here, before this thread runs on (a
    # SIGSTOP sent to the process may be taken by another thread while this one continues
    # into the next step for a moment — e.g. into a state-store lock).
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
