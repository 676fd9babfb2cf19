"""Progress for a pass over many accounts: the counts, and how they are shown on stderr.

- `FleetProgress`: done/total, failures, the slowest account; thread-safe.
- `TerminalLine`: on a terminal (stderr a TTY, logs rendered for people), one status line
  redrawn in place; log lines are written above it (through `Above`).
- `LogTicker`: otherwise (JSON logs, cron, Kubernetes), a `fleet.progress` log event every
  `ROTATOR_PROGRESS_INTERVAL` seconds (default 5; rotator.envsettings) and one at the end.

Shared by the thread pool (rotator.ops.fleet) and the forked workers' parent
(rotator.ops.fleet_procs). stdout is never touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog

from rotator.envsettings import progress_interval

__all__ = [
    "FAILED_RESULTS",
    "Above",
    "FleetProgress",
    "LogTicker",
    "TerminalLine",
    "isatty",
]

log = structlog.get_logger("rotator.fleet")

FAILED_RESULTS = frozenset({"rolled_back", "needs_attention", "error"})


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


class LogTicker:
    """`fleet.progress` log events every interval, and a last one when the pass ends."""

    def __init__(self, progress: FleetProgress) -> None:
        self.progress = progress
        self.interval = progress_interval()
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


class TerminalLine:
    """One status line at the bottom of a terminal, redrawn in place; logs scroll above it.

    While it runs, the log handlers write through `Above`, which clears the line before
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
        above = Above(self)
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


class Above:
    """A text stream for the log handlers that keeps the progress line at the bottom."""

    def __init__(self, line: TerminalLine) -> None:
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


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
