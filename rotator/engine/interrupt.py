"""A process-wide, cooperative stop: SIGINT and SIGTERM end a run at a step boundary.

A signal only sets a flag. The call in flight (an HTTP request, a backend write, a
check) finishes or times out as usual; the runner looks at the flag before each step
and stops there with everything checkpointed, and the CLI starts no further account.
The next `rotator rotate` resumes what was stopped. Killing the process outright
(SIGKILL) is safe too, by design; this is the polite way that also prints the results.

Only the CLI installs the handlers (`cooperative_signals`); under Lambda nothing sets
the flag and every check is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.engine.outcome import Outcome
    from rotator.engine.runrecord import Run

__all__ = [
    "STOP_SIGNALS",
    "Interrupted",
    "abrupt_signals",
    "clear",
    "cooperative_signals",
    "interrupted",
    "not_started",
    "request_stop",
    "stop_reason",
    "stop_requested",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stop = threading.Event()


class Interrupted(KeyboardInterrupt):
    """A read-only command was stopped by a signal (it raises at once; nothing to undo)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_signal_name: str | None = None


def request_stop(signum: int | None = None) -> None:
    """Ask every run in this process to stop at its next step boundary."""
    global _signal_name
    if _signal_name is None:
        _signal_name = signal.Signals(signum).name if signum is not None else "a stop request"
    _stop.set()


def stop_requested() -> bool:
    """True once a stop was asked for: start nothing new, stop before the next step."""
    return _stop.is_set()


def stop_reason() -> str:
    """What stopped us, for messages (`SIGINT`, `SIGTERM`)."""
    return _signal_name or "a stop request"


def clear() -> None:
    """Forget a stop request (tests; a long-lived process between commands)."""
    global _signal_name
    _signal_name = None
    _stop.clear()


def _say(text: str) -> None:
    from rotator.util.safeio import SafeStream

    stream = SafeStream(sys.stderr)  # a closed stderr must not turn a stop into a crash
    # On a terminal a fleet's progress line may be on screen (rotator.ops.fleet): start from a
    # cleared line instead of appending to it; the next redraw puts it back below.
    clear = "\r\x1b[K" if stream.isatty() else ""
    stream.write(clear + text + "\n")
    stream.flush()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if stop_requested():
        _say(
            f"rotator: {signal.Signals(signum).name} again: still stopping at the next step "
            "boundary; SIGKILL stops at once (the next `rotator rotate` resumes)"
        )
        return
    request_stop(signum)
    _say(
        f"rotator: {stop_reason()} received: stopping at the next step boundary "
        "(the call in flight finishes or times out); nothing new is started"
    )


@contextlib.contextmanager
def cooperative_signals() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM request a stop instead of killing the process.

    Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _install(_on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _install(handler: Callable[[int, FrameType | None], None]) -> dict[int, Any]:
    return {int(signum): signal.signal(signum, handler) for signum in STOP_SIGNALS}


@contextlib.contextmanager
def abrupt_signals() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM raise `Interrupted` (commands that only read)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _install(_raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted(run: Run, account: str) -> Outcome:
    """How a run stopped at a step boundary by a signal is reported (exit status 3)."""
    from rotator.engine.outcome import outcome_for

    return outcome_for(
        run,
        account,
        "interrupted",
        f"stopped by {stop_reason()} before {run.state.value}; "
        "the next `rotator rotate` resumes from there",
    )


def not_started(account: str) -> Outcome:
    """An account whose run a signal came before: nothing of it was begun."""
    from rotator.engine.outcome import Outcome

    return Outcome(
        account,
        "not_started",
        f"not started: stopped by {stop_reason()}; the next `rotator rotate` covers it",
    )
