"""The audit trail: every run transition as one JSON line, appended and never rewritten.

`AuditFile` is an `EventSink` writing `RunEvent.to_dict()` to `<state path>/audit.jsonl`
(mode 0600). Each line is one `os.write` on an `O_APPEND` descriptor, so lines from
concurrent processes never interleave and nothing earlier is ever touched; `fsync=True`
makes each line durable before the rotation moves on. Where there is no state directory
(the DynamoDB store, AWS Lambda), `log_event` sends the same dictionary to the log as an
`audit.recorded` line instead — the run record in DynamoDB keeps its own `events` list.
Events hold ids, names, states and times, never a secret (see `rotator.events`); their
texts (a failure may quote a check's output) pass the log redactor on the way out too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from rotator.config import Config
from rotator.errors import StateError
from rotator.events import EventSink, RunEvent, fan_out
from rotator.log import redact_fields
from rotator.util.fsutil import ensure_private_dir

if TYPE_CHECKING:
    from rotator.engine.workflow import Engine

__all__ = ["AuditFile", "event_sink", "log_event", "read_audit"]

log = structlog.get_logger("rotator.audit")


class AuditFile:
    """An append-only JSONL file of run events; call it with a `RunEvent`."""

    __name__ = "audit_file"

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync

    def __call__(self, event: RunEvent) -> None:
        """Append one line. Raises StateError when the file cannot be written."""
        line = (json.dumps(_redacted(event.to_dict()), sort_keys=True) + "\n").encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            try:
                fd = os.open(self.path, flags, 0o600)
            except FileNotFoundError:  # its directory is missing: made once, not checked per line
                ensure_private_dir(self.path.parent)
                fd = os.open(self.path, flags, 0o600)
            try:
                os.write(fd, line)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot append to audit file {self.path}: {exc.strerror}") from exc


def log_event(event: RunEvent) -> None:
    """The audit record as a structured log line (Lambda, DynamoDB store)."""
    fields = _redacted(event.to_dict())
    fields.pop("event")
    log.info("audit.recorded", **fields)


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    """The record's texts (failure, detail) with every known secret masked."""
    return redact_fields(record)


def read_audit(path: Path) -> Iterator[dict[str, Any]]:
    """The audit file's records, oldest first; a torn last line (crash mid-write) is skipped."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def event_sink(
    config: Config, engine: Engine, *, audit_to_log: bool = False, extra: tuple[EventSink, ...] = ()
) -> EventSink:
    """Every observer of `engine`'s runs in one sink: audit trail, notifications, `extra`.

    The audit goes to `config.audit_path` unless `audit_to_log` (Lambda) or there is no
    path (DynamoDB store without `[audit] path`), in which case it is logged.
    """
    from rotator.ops.notify import Notifier

    path = None if audit_to_log else config.audit_path
    audit: EventSink = AuditFile(path, fsync=config.audit.fsync) if path else log_event

    def remaining(run_id: str) -> list[str]:
        run = engine.load_run(run_id)
        return list(run.remaining) if run is not None else []

    notifier = Notifier(config.notifications, remaining_for=remaining)
    return fan_out([audit, notifier, *extra])
