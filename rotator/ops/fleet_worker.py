"""`rotate --processes N`: one worker's run, in the forked child: engine to event lines.

`worker_main` binds itself to its CPU (if the parent gave it one) and builds the
worker's own engine (`setup(gate, slots)`: its own MotherDuck client, held to `calls`
requests in flight by `slots`, its own state store handle and lease owner `host:pid`, with a
`ParentGate` on the parent's admin-probe verdict as the engine's effect gate). It then
rotates its share of the accounts, `fleet_sizing.rotations_in_flight(calls)` at a time,
and reports each one on the event pipe, one JSON line per event:
`{"k": "s", "a": account}` when an account starts, `{"k": "f", "a": ..., "o": {outcome},
"c": exit code}` when it ends (outcome text redacted here, where the new tokens are
known). Its stderr (log lines) is the other pipe; stdout goes to /dev/null.

It obeys the stop signals the parent forwards (stopping at a step boundary) and asks for
SIGTERM when the parent dies (`PR_SET_PDEATHSIG`). The parent side — forking, dealing,
relaying the pipes, reaping — is rotator.ops.fleet_procs, whose fork calls `worker_main`
in the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

import structlog

from rotator.engine import interrupt
from rotator.errors import RotatorError
from rotator.motherduck.slots import CallSlots
from rotator.ops.fleet_sizing import bind, rotations_in_flight

if TYPE_CHECKING:
    from rotator.engine.outcome import Outcome

__all__ = ["GATE_OPEN", "One", "ParentGate", "ProbeRefused", "Setup", "worker_main"]

log = structlog.get_logger("rotator.fleet")

_PR_SET_PDEATHSIG = 1

One = Callable[[str], "tuple[Outcome, int]"]
Setup = Callable[["Callable[[], None] | None", CallSlots], One]
"""Builds a worker's engine with the given effect gate, its MotherDuck client holding its
requests to the given slots (its share of `--concurrency`); returns its per-account
function."""

GATE_OPEN: Final = b"\x01"
"""What the parent writes on a worker's gate pipe when the admin-token probe passed."""


class ProbeRefused(RotatorError):
    """The parent's admin-token probe failed: nothing is written; the parent says why."""


class ParentGate:
    """A worker engine's effect gate: the parent's admin-probe verdict, read once.

    The first rotation to reach its first checkpoint or side effect reads the gate pipe
    (blocking until the parent has its answer); the others wait on the lock, then use the
    verdict. `GATE_OPEN` is yes; end of file (the parent closed the pipe, or died) is no,
    and every rotation stops there with ProbeRefused, before writing anything.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._open: bool | None = None

    def __call__(self) -> None:
        with self._lock:
            if self._open is None:
                try:
                    self._open = os.read(self._fd, 1) == GATE_OPEN
                except OSError:
                    self._open = False
                with contextlib.suppress(OSError):
                    os.close(self._fd)
        if not self._open:
            raise ProbeRefused("the admin-token probe failed; nothing was written")


def worker_main(
    names: list[str], setup: Setup, calls: int, chan: int, err: int, parent: int,
    cpus: frozenset[int] | None = None, gate: int = -1, *, lends: bool = False,
) -> int:
    """`lends`: one of this worker's `calls` request slots is the parent's admin-token
    probe's until its verdict is in (the probe is one of the pass's requests in flight)."""
    _die_with_parent(parent)
    if cpus is not None:
        bind(cpus)  # before any thread starts: threads inherit their creator's mask
    for signum in interrupt.STOP_SIGNALS:
        # The parent says what stops us and forwards it; a worker only obeys (quietly).
        signal.signal(signum, lambda s, f: interrupt.request_stop(s))
    os.dup2(err, 2)
    os.close(err)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    from rotator import log as rlog

    parent_gate = ParentGate(gate) if gate >= 0 else None
    slots = CallSlots(calls)
    if lends and parent_gate is not None:
        _lend_a_slot(slots, parent_gate)
    one = setup(parent_gate, slots)
    lock = threading.Lock()

    def send(event: dict[str, Any]) -> None:
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        with lock:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(chan, view) :]
                except BrokenPipeError:
                    return  # the parent is gone; PDEATHSIG stops us at a step boundary

    def run(name: str) -> None:
        send({"k": "s", "a": name})
        try:
            outcome, code = one(name)
        except Exception as exc:  # what one process would end on (exit 4), for this account
            from rotator.engine.containment import describe
            from rotator.engine.outcome import Outcome

            log.exception("fleet.worker_account_failed", account=name)
            outcome, code = Outcome(name, "needs_attention", describe(exc)), 4
        doc = asdict(outcome)
        doc["message"] = rlog.redact(outcome.message)
        send({"k": "f", "a": name, "o": doc, "c": code})

    # More rotations than request slots at once: see fleet_sizing.rotations_in_flight.
    with ThreadPoolExecutor(max_workers=min(rotations_in_flight(calls), len(names))) as pool:
        for future in [pool.submit(run, name) for name in names]:
            future.result()
    return 0


def _lend_a_slot(slots: CallSlots, gate: ParentGate) -> None:
    """Hold one of `slots` (taken before any rotation starts) until `gate` has its verdict."""
    held = threading.Event()

    def hold() -> None:
        with slots.slot(0):  # a fresh CallSlots: free at once
            held.set()
            with contextlib.suppress(ProbeRefused):  # the rotations report it
                gate()

    threading.Thread(target=hold, name="rotator-probe-slot", daemon=True).start()
    held.wait()


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM when the parent dies (a cooperative stop), not an orphan."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl took effect
        interrupt.request_stop(int(signal.SIGTERM))
