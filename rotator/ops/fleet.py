"""Running `rotate` over many accounts: the shard split, progress, and the retention trim.

- `select_shard(names, shard)`: the accounts of shard I of N (a stable hash of each
  username, rotator.schedule.shard_of), so Kubernetes Indexed Jobs or several hosts
  sharing the DynamoDB store split one configured fleet without overlap.
- `run_fleet(names, one, concurrency)`: `one(name)` for every account on a thread pool,
  with progress on stderr. On a terminal (stderr a TTY, logs rendered for people) one
  status line is redrawn in place — done/total, failures, the slowest account — and log
  lines are written above it. Otherwise (JSON logs, cron, Kubernetes) a `fleet.progress`
  log event every `ROTATOR_PROGRESS_INTERVAL` seconds (default 5) and one at the end.
  stdout (tables, JSON) is never touched.
- `prune_after_pass(engine, outcomes)`: with `[state] keep_runs`, trim the accounts whose
  run finished in this pass through their run index (rotator.ops.retention.prune_accounts).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog

from rotator.errors import RotatorError
from rotator.schedule import in_shard
from rotator.util.safeio import SafeStream

if TYPE_CHECKING:
    from rotator.engine.outcome import Outcome
    from rotator.engine.workflow import Engine

__all__ = ["FleetProgress", "prune_after_pass", "run_fleet", "select_shard"]

log = structlog.get_logger("rotator.fleet")

FAILED_RESULTS = frozenset({"rolled_back", "needs_attention", "error"})
DEFAULT_INTERVAL = 5.0


def select_shard(names: Sequence[str], shard: tuple[int, int] | None) -> list[str]:
    """The accounts of shard `(I, N)` in configuration order (all of them without a shard)."""
    return [n for n in names if in_shard(n, shard)]


@dataclass
class FleetProgress:
    """Counts for the progress line; thread-safe. `clock` is injectable for tests."""

    total: int
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    failed: int = 0
    incomplete: int = 0
    running: dict[str, float] = field(default_factory=dict)
    slowest: tuple[str, float] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def started(self, name: str) -> None:
        with self._lock:
            self.running[name] = self.clock()

    def finished(self, name: str, result: str) -> None:
        with self._lock:
            took = self.clock() - self.running.pop(name, self.clock())
            self.done += 1
            if result in FAILED_RESULTS:
                self.failed += 1
            elif result == "incomplete":
                self.incomplete += 1
            if self.slowest is None or took > self.slowest[1]:
                self.slowest = (name, took)

    def snapshot(self) -> dict[str, Any]:
        """done/total, failures and the slowest account so far (finished or still running)."""
        with self._lock:
            now = self.clock()
            slowest = self.slowest
            for name, since in self.running.items():
                if slowest is None or now - since > slowest[1]:
                    slowest = (name, now - since)
            return {
                "done": self.done,
                "total": self.total,
                "failed": self.failed,
                "incomplete": self.incomplete,
                "running": len(self.running),
                "slowest_account": slowest[0] if slowest else None,
                "slowest_seconds": round(slowest[1], 3) if slowest else None,
            }

    def line(self) -> str:
        s = self.snapshot()
        text = f"rotator: {s['done']}/{s['total']} done, {s['failed']} failed"
        if s["incomplete"]:
            text += f", {s['incomplete']} incomplete"
        if s["slowest_account"]:
            text += f", slowest {s['slowest_account']} ({s['slowest_seconds']:.1f}s)"
        return text


def run_fleet(
    names: Sequence[str],
    one: Callable[[str], Outcome],
    *,
    concurrency: int,
    log_format: str = "auto",
    stream: TextIO | None = None,
) -> list[Outcome]:
    """`one(name)` for each account, in order of `names`, with progress for several."""
    if len(names) <= 1:
        return [one(name) for name in names]
    progress = FleetProgress(total=len(names))
    # A terminal that went away (or a closed pipe) must not stop the pass.
    err = cast(TextIO, SafeStream(sys.stderr if stream is None else stream))
    live = _isatty(err) and log_format != "json"

    def tracked(name: str) -> Outcome:
        progress.started(name)
        result = "error"
        try:
            outcome = one(name)
            result = outcome.result
            return outcome
        finally:
            progress.finished(name, result)

    reporter = _TerminalLine(err, progress) if live else _LogTicker(progress)
    with reporter.running(), ThreadPoolExecutor(max_workers=min(concurrency, len(names))) as pool:
        return list(pool.map(tracked, names))


class _LogTicker:
    """`fleet.progress` log events every interval, and a last one when the pass ends."""

    def __init__(self, progress: FleetProgress) -> None:
        self.progress = progress
        self.interval = _interval()
        self._stop = threading.Event()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            log.info("fleet.progress", **self.progress.snapshot())

    @contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self._tick, name="fleet-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            log.info("fleet.progress", **self.progress.snapshot())


class _TerminalLine:
    """One status line at the bottom of a terminal, redrawn in place; logs scroll above it.

    While it runs, the log handlers write through `_Above`, which clears the line before
    a log line and redraws it after, so the two never mix.
    """

    def __init__(self, stream: TextIO, progress: FleetProgress) -> None:
        self.stream = stream
        self.progress = progress
        self.lock = threading.RLock()
        self.shown = False
        self._stop = threading.Event()

    def draw(self) -> None:
        with self.lock:
            self.stream.write("\r\x1b[K" + self.progress.line())
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        with self.lock:
            if self.shown:
                self.stream.write("\r\x1b[K")
                self.shown = False

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self.draw()

    @contextmanager
    def running(self) -> Iterator[None]:
        above = _Above(self)
        with _logs_to(self.stream, above):
            self.draw()
            thread = threading.Thread(target=self._tick, name="fleet-progress", daemon=True)
            thread.start()
            try:
                yield
            finally:
                self._stop.set()
                thread.join()
                with self.lock:
                    self.clear()
                    self.stream.write(self.progress.line() + "\n")
                    self.stream.flush()


class _Above:
    """A text stream for the log handlers that keeps the progress line at the bottom."""

    def __init__(self, line: _TerminalLine) -> None:
        self._line = line

    def write(self, text: str) -> int:
        with self._line.lock:
            was_shown = self._line.shown
            self._line.clear()
            written = self._line.stream.write(text)
            if was_shown and text.endswith("\n"):
                self._line.draw()
            return written

    def flush(self) -> None:
        self._line.stream.flush()

    def isatty(self) -> bool:
        return True


@contextmanager
def _logs_to(stream: TextIO, proxy: Any) -> Iterator[None]:
    """Point the log handlers that write to `stream` at `proxy` for the block."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and h.stream is stream
    ]
    previous = structlog.get_config().get("logger_factory")
    for handler in handlers:
        handler.setStream(proxy)
    factory_file = getattr(previous, "_file", None)
    if factory_file is stream:
        structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=proxy))
    try:
        yield
    finally:
        for handler in handlers:
            handler.setStream(stream)
        if factory_file is stream:
            structlog.configure(logger_factory=previous)


def _interval() -> float:
    raw = os.environ.get("ROTATOR_PROGRESS_INTERVAL", "")
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        value = DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def prune_after_pass(engine: Engine, outcomes: Sequence[Outcome]) -> None:
    """With `[state] keep_runs`, trim the run index of accounts whose run ended in this pass.

    Reads each such account's record and its oldest indexed runs; takes a lease only when
    something goes. Failures are logged, never raised: the rotations already happened.
    """
    keep_text = engine.config.state.keep_runs
    if keep_text is None:
        return
    from rotator.ops.retention import PrunableStore, parse_keep, prune_accounts

    ended = ("completed", "adopted", "rolled_back")
    finished = [o.account for o in outcomes if o.run_id and o.result in ended]
    if not finished or not isinstance(engine.store, PrunableStore):
        return
    try:
        report = prune_accounts(
            engine.store,
            finished,
            keep=parse_keep(keep_text),
            now=engine.clock(),
            owner=engine.owner,
            lease_ttl=engine.config.defaults.lease_ttl,
        )
    except RotatorError as exc:
        log.warning("state.prune_failed", error=str(exc))
        return
    if report.removed:
        log.info("state.prune_finished", removed=len(report.removed), accounts=len(finished))
