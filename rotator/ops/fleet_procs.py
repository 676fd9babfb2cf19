"""`rotate --processes N`: a fleet split across N forked worker processes, one parent.

One Python process running 32 threads spends much of its CPU handing the GIL between
them (issue 16: ~4,650 futex calls per rotation at concurrency 32, 7 at concurrency 1)
and can use one core. N workers, sharing the concurrency (its request slots dealt out,
so no more calls are in flight than `--concurrency` says), use N cores and contend less.
What a user sees does not change:

- The parent loads the config, builds its MotherDuck client (httpx imported, for the
  workers to inherit) and forks the workers. Nothing is threaded yet, and it has opened
  no state store. Each worker is bound to a CPU of its own when each can have one
  (fleet_sizing.placement).
- Only then does the parent send the admin-token probe, so its round trip overlaps the
  workers' start and first reads. Each worker's engine waits for the verdict on a gate
  pipe before its first checkpoint or side effect: one byte for yes, end of file for no
  (fleet_worker.ParentGate). On a no, nothing is written anywhere; the parent drops the
  workers' outcomes and raises the probe's error, as if it had asked first.
- Each worker builds its own engine (its own MotherDuck client, held to the worker's
  share of `--concurrency` requests in flight, its own state store handle and lease
  owner `host:pid`) and rotates its share: the selected accounts dealt round-robin in
  configuration order, so the shares are disjoint and within one account of each other
  in size. (A hash split like `--shard` would be uneven at small N and, nested inside a
  user's `--shard I/N`, would put every account in one worker.) Leases still guard each
  account.
- Workers report on a pipe, one JSON line per event: `{"k": "s", "a": account}` when an
  account starts, `{"k": "f", "a": ..., "o": {outcome}, "c": exit code}` when it ends.
  Outcome text is redacted in the worker (which knows the new tokens) and again in the
  parent; no secret is ever a field of an Outcome. The parent keeps the fleet progress
  from these events and prints every account once, in configuration order, with one
  summary and the same exit status as one process.
- A worker's stderr (its log lines) is a pipe too; the parent writes each complete line
  whole to its own stderr (above the progress line on a terminal), so lines from
  different workers never interleave.
- SIGINT/SIGTERM to the parent: it forwards the signal to every live worker, each stops
  at its next step boundary and reports `interrupted`/`not_started` as one process
  would. Workers die with the parent (`PR_SET_PDEATHSIG`: a SIGTERM, so even then they
  stop at a step boundary). A worker that dies (SIGKILL, OOM) is reaped; each of its
  accounts that did not finish is reported as an `error` (exit 1) saying the next
  `rotator rotate` resumes it (its checkpoints survive; the dead holder's lease is taken
  over at once on this host). The parent reaps every worker before it returns.

This module is the parent side: `run_fleet_processes` forks the workers, deals them
their shares, relays their event and log lines, keeps the progress, forwards the stop
signals, reaps the workers and assembles the outcomes. What runs in a forked worker is
rotator.ops.fleet_worker; how many workers and what each gets, rotator.ops.fleet_sizing
(its names are re-exported here).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog

from rotator.engine import interrupt
from rotator.ops.fleet_sizing import (
    MIN_ACCOUNTS_PER_PROCESS,
    auto_processes,
    can_fork,
    deal,
    placement,
    split_concurrency,
)
from rotator.ops.fleet_worker import GATE_OPEN, One, Setup, worker_main
from rotator.ops.progress import Above, FleetProgress, LogTicker, TerminalLine, isatty
from rotator.util.safeio import SafeStream

if TYPE_CHECKING:
    from rotator.engine.outcome import Outcome

__all__ = [
    "MIN_ACCOUNTS_PER_PROCESS",
    "One",
    "auto_processes",
    "can_fork",
    "deal",
    "run_fleet_processes",
    "split_concurrency",
]

log = structlog.get_logger("rotator.fleet")

_FAILED = 1  # EXIT_FAILED (rotator.cli), for the accounts of a worker that died
_TICK = 0.2  # seconds between looks at the stop flag and the workers' exits
# After reading, let the pipes fill this long: a read then carries many lines, not one,
# which cuts the parent's CPU (a pipe holds 64 KiB; a worker logs a few KiB in this time).
_GATHER = 0.02


@dataclass
class _Worker:
    index: int
    names: list[str]
    pid: int = 0
    chan: int = -1  # read end of the event pipe
    err: int = -1  # read end of the worker's stderr
    gate: int = -1  # write end of the worker's gate pipe (the admin probe's verdict)
    chan_buf: bytes = b""
    err_buf: bytes = b""
    started: set[str] = field(default_factory=set)
    status: int | None = None  # os.waitstatus_to_exitcode once reaped
    failed: str | None = None  # why it never started (a fork that failed)


def run_fleet_processes(
    names: Sequence[str],
    setup: Setup,
    *,
    processes: int,
    concurrency: int,
    log_format: str = "auto",
    stream: TextIO | None = None,
    gate: Callable[[], None] | None = None,
) -> list[tuple[Outcome, int]]:
    """Every account of `names` once, in order, rotated by `processes` forked workers.

    `setup(effect_gate)` runs in each worker and returns its per-account function
    (building the worker's own engine, with `effect_gate` as its gate: None without a
    `gate`). Returns (outcome, exit code) per account.

    `gate` (the admin-token probe) is called here once the workers are forked, so its
    round trip overlaps their start and first reads. Each worker's engine waits for its
    verdict before its first checkpoint or side effect (`fleet_worker.ParentGate`). When
    it raises, every worker is told no, so nothing is written or changed; the workers'
    outcomes are dropped and the probe's error is raised, as if it had been asked first.
    """
    from rotator import log as rlog
    from rotator.engine.outcome import Outcome

    progress = FleetProgress(total=len(names))
    err = cast(TextIO, SafeStream(sys.stderr if stream is None else stream))
    live = isatty(err) and log_format != "json"
    workers = [_Worker(i, share) for i, share in enumerate(deal(names, processes)) if share]
    calls = split_concurrency(concurrency, len(workers))
    cpus: Sequence[frozenset[int] | None] = placement(len(workers)) or [None] * len(workers)
    results: dict[str, tuple[Outcome, int]] = {}
    if interrupt.stop_requested():
        if gate is not None:
            gate()  # nothing starts, but a rejected token is still the command's error
        return [(interrupt.not_started(n), 3) for n in names]
    for stream_ in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream_.flush()
    parent = os.getpid()
    refused: BaseException | None = None
    try:
        for worker, count, bound in zip(workers, calls, cpus, strict=True):
            # The probe is one of the pass's requests: the first worker lends it a slot.
            lends = gate is not None and worker is workers[0]
            _spawn(worker, workers, setup, count, parent, bound, gated=gate is not None,
                   lends=lends)
        if gate is not None:
            try:
                gate()
            except BaseException as exc:  # the command's error, once the workers are reaped
                refused = exc
            _answer_gates(workers, ok=refused is None)
        reporter = TerminalLine(err, progress) if live else LogTicker(progress)
        emit = _emitter(reporter, err)
        with reporter.running():
            _supervise(workers, progress, results, emit)
    finally:
        _answer_gates(workers, ok=False)  # any still waiting: no (an error on the way here)
        _reap_all(workers)
    if refused is not None:
        raise refused
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)  # the parent's share, for benchmarks
    log.debug("fleet.parent_usage", cpu_s=round(usage.ru_utime + usage.ru_stime, 3))
    for worker in workers:
        for name in worker.names:
            if name not in results:
                results[name] = (_lost(worker, name), _FAILED)
                log.error(
                    "fleet.worker_lost",
                    account=name,
                    worker_pid=worker.pid,
                    how=_how(worker.status, worker.failed),
                )
    out: list[tuple[Outcome, int]] = []
    for name in names:
        outcome, code = results[name]
        out.append((Outcome(**{**asdict(outcome), "message": rlog.redact(outcome.message)}), code))
    return out


# -- the parent --------------------------------------------------------------------------


def _spawn(
    worker: _Worker, workers: Sequence[_Worker], setup: Setup, calls: int,
    parent: int, cpus: frozenset[int] | None = None, *, gated: bool = False,
    lends: bool = False,
) -> None:
    chan_r, chan_w = os.pipe()
    err_r, err_w = os.pipe()
    gate_r, gate_w = os.pipe() if gated else (-1, -1)
    try:
        pid = os.fork()
    except OSError as exc:  # out of processes or memory: its accounts are reported, not run
        for fd in (chan_r, chan_w, err_r, err_w, gate_r, gate_w):
            if fd >= 0:
                os.close(fd)
        worker.failed = f"could not be started ({exc.strerror or exc})"
        worker.status = 1
        log.error("fleet.worker_not_started", error=worker.failed)
        return
    if pid == 0:  # the worker: never returns
        code = 70
        try:
            os.close(chan_r)
            os.close(err_r)
            if gate_w >= 0:
                os.close(gate_w)
            for other in workers:
                # Another worker's gate writer kept open here would hide its "no" (EOF).
                for fd in (other.chan, other.err, other.gate):
                    if fd >= 0:
                        with contextlib.suppress(OSError):
                            os.close(fd)
            code = worker_main(
                worker.names, setup, calls, chan_w, err_w, parent, cpus, gate_r, lends=lends
            )
        except BaseException:  # a worker must never unwind into the parent's code
            with contextlib.suppress(BaseException):
                log.exception("fleet.worker_crashed")
        finally:
            with contextlib.suppress(BaseException):
                sys.stderr.flush()
            os._exit(code)
    os.close(chan_w)
    os.close(err_w)
    if gate_r >= 0:
        os.close(gate_r)
    worker.pid, worker.chan, worker.err, worker.gate = pid, chan_r, err_r, gate_w
    for fd in (chan_r, err_r):
        os.set_blocking(fd, False)


def _answer_gates(workers: Sequence[_Worker], *, ok: bool) -> None:
    """Tell each worker still waiting the probe's verdict: one byte for yes, end of file
    for no. Each gate is answered once."""
    for worker in workers:
        if worker.gate < 0:
            continue
        with contextlib.suppress(OSError):  # a worker gone already: nothing to tell
            if ok:
                os.write(worker.gate, GATE_OPEN)
        with contextlib.suppress(OSError):
            os.close(worker.gate)
        worker.gate = -1


Emit = Callable[[Sequence[str]], None]


def _emitter(reporter: LogTicker | TerminalLine, err: TextIO) -> Emit:
    """How the parent writes one forwarded log line: above the terminal line, or plain."""
    from rotator import log as rlog

    lock = threading.Lock()
    target: Any = Above(reporter) if isinstance(reporter, TerminalLine) else err

    def emit(lines: Sequence[str]) -> None:
        # Whole lines only, in one write: no line of another worker (or of the parent's
        # own log) can land inside one of these.
        text = "".join(rlog.redact(line) + "\n" for line in lines)
        with lock:
            target.write(text)
            target.flush()

    return emit


def _supervise(
    workers: list[_Worker],
    progress: FleetProgress,
    results: dict[str, tuple[Outcome, int]],
    emit: Emit,
) -> None:
    """Read the workers' pipes until each has exited; forward a stop request once."""
    sel = selectors.DefaultSelector()
    for worker in workers:
        if worker.pid:
            sel.register(worker.chan, selectors.EVENT_READ, (worker, "chan"))
            sel.register(worker.err, selectors.EVENT_READ, (worker, "err"))
    forwarded = False
    try:
        while any(w.status is None for w in workers):
            ready = sel.select(timeout=_TICK)
            for key, _ in ready:
                worker, which = key.data
                if not _read(worker, which, progress, results, emit):
                    sel.unregister(key.fd)
            if ready:
                time.sleep(_GATHER)
            if interrupt.stop_requested() and not forwarded:
                forwarded = True
                signum = _stop_signal()
                for worker in workers:
                    if worker.status is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signum)
            for worker in workers:
                if worker.status is None:
                    pid, status = _waitpid(worker.pid, os.WNOHANG)
                    if pid:
                        worker.status = os.waitstatus_to_exitcode(status)
                        # Whatever it wrote before exiting is in the pipes: read it all, then
                        # stop listening (a grandchild holding the pipe must not stall us).
                        for fd, which in ((worker.chan, "chan"), (worker.err, "err")):
                            with contextlib.suppress(KeyError, ValueError):
                                while _read(worker, which, progress, results, emit, drain=True):
                                    pass
                                sel.unregister(fd)
                        _flush_partial(worker, emit)
    finally:
        sel.close()


def _read(
    worker: _Worker,
    which: str,
    progress: FleetProgress,
    results: dict[str, tuple[Outcome, int]],
    emit: Emit,
    *,
    drain: bool = False,
) -> bool:
    """Read what is there; False at end of file (or nothing more, when draining)."""
    fd = worker.chan if which == "chan" else worker.err
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return not drain
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.EIO):
            return False
        raise
    if not data:
        return False
    if which == "err":
        lines = (worker.err_buf + data).split(b"\n")
        worker.err_buf = lines.pop()
        if lines:
            emit([line.decode("utf-8", "replace") for line in lines])
        return True
    lines = (worker.chan_buf + data).split(b"\n")
    worker.chan_buf = lines.pop()
    for line in lines:
        try:
            event = json.loads(line) if line else None
        except ValueError:
            event = None  # never: a worker writes whole JSON lines under a lock
        if isinstance(event, dict):
            _event(worker, event, progress, results)
    return True


def _event(
    worker: _Worker,
    event: dict[str, Any],
    progress: FleetProgress,
    results: dict[str, tuple[Outcome, int]],
) -> None:
    from rotator.engine.outcome import Outcome

    name = event["a"]
    if name not in worker.names:
        return  # never: a worker reports only its own accounts
    if event["k"] == "s":
        worker.started.add(name)
        progress.started(name)
    elif event["k"] == "f":
        outcome = Outcome(**event["o"])
        results[name] = (outcome, int(event["c"]))
        progress.finished(name, outcome.result)


def _flush_partial(worker: _Worker, emit: Emit) -> None:
    if worker.err_buf:
        emit([worker.err_buf.decode("utf-8", "replace")])
        worker.err_buf = b""


def _waitpid(pid: int, flags: int) -> tuple[int, int]:
    try:
        got, status, usage = os.wait4(pid, flags)
    except ChildProcessError:
        return pid, 0
    if got:
        log.debug(
            "fleet.worker_exited",
            worker_pid=pid,
            how=_how(os.waitstatus_to_exitcode(status)),
            cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
            max_rss_mb=round(usage.ru_maxrss / 1024, 1),
        )
    return got, status


def _stop_signal() -> int:
    try:
        return int(signal.Signals[interrupt.stop_reason()])
    except KeyError:
        return int(signal.SIGTERM)


def _reap_all(workers: Sequence[_Worker], grace: float = 30.0) -> None:
    """Every worker reaped before we return: SIGTERM (a step boundary), then SIGKILL."""
    live = [w for w in workers if w.pid and w.status is None]
    if live:
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            for worker in list(live):
                pid, status = _waitpid(worker.pid, os.WNOHANG)
                if pid:
                    worker.status = os.waitstatus_to_exitcode(status)
                    live.remove(worker)
            if live:
                time.sleep(0.05)
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            worker.status = os.waitstatus_to_exitcode(_waitpid(worker.pid, 0)[1])
    for worker in workers:
        for fd in (worker.chan, worker.err):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        worker.chan = worker.err = -1


def _how(status: int | None, failed: str | None = None) -> str:
    if failed:
        return failed
    if status is None:
        return "did not report"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
        return f"was killed by signal {-status}"
    return f"exited with status {status}"


def _lost(worker: _Worker, name: str) -> Outcome:
    from rotator.engine.outcome import Outcome

    how = _how(worker.status, worker.failed)
    if name in worker.started:
        text = (
            f"worker process {worker.pid} {how} during this account's run; its checkpoints "
            "are kept and the next `rotator rotate` resumes it"
        )
    else:
        text = (
            f"not started: worker process {worker.pid} {how}; "
            "the next `rotator rotate` covers it"
        )
    return Outcome(name, "error", text)
