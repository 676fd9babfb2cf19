"""The optional state file: load on start, save atomically after each mutation.

Saving takes a snapshot under the model's lock, then writes it (temp file, fsync,
rename, fsync the directory; mode 0600, since it holds token secrets) under this
file's own lock, skipping snapshots older than the one already written, so concurrent
requests can never leave an older state on disk than a response already promised, and
those queued behind one write share it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rotator.simulator.model import Model
from rotator.simulator.records import Clock, utc_now
from rotator.util.fsutil import atomic_write_bytes

__all__ = ["StateFile"]


class StateFile:
    """A model's on-disk copy at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._written = -1

    def load(self, clock: Clock = utc_now) -> Model | None:
        """The saved model, or None when the file does not exist yet.

        Raises ValueError when the file exists but is not a state file we wrote.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            model = Model.load(json.loads(text), clock)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: not a simulator state file ({exc})") from exc
        self._written = model.generation
        return model

    def save(self, model: Model, at_least: int | None = None) -> None:
        """Write the model unless a save covering generation `at_least` already happened.

        Concurrent callers queue on the lock and the first one's snapshot covers the
        others' mutations (a group commit). `at_least` defaults to the current generation.
        Raises OSError when the write fails.
        """
        target = model.generation if at_least is None else at_least
        with self._lock:
            if self._written >= target:
                return
            generation, data = model.dump()
            atomic_write_bytes(self.path, json.dumps(data, separators=(",", ":")).encode())
            self._written = generation
