"""The audit trail: append-only JSON lines, private, whole lines under concurrency."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from structlog.testing import capture_logs

from rotator.events import RunEvent
from rotator.ops.audit import AuditFile, log_event, read_audit


def event(to_state: str = "created", run_id: str = "r1") -> RunEvent:
    return RunEvent(
        at="2026-11-23T12:00:00+00:00",
        account="svc_a",
        run_id=run_id,
        from_state="creating",
        to_state=to_state,
        trigger="cli",
        duration_seconds=1.5,
        old_token_id="old",
        new_token_id="new",
        old_token_created_ts=None,
        new_token_created_ts=None,
    )


class TestAuditFile:
    def test_appends_one_line_per_event_mode_0600(self, tmp_path: Path) -> None:
        """Each event is one JSON line equal to RunEvent.to_dict(); the file is 0600."""
        path = tmp_path / "state" / "audit.jsonl"
        sink = AuditFile(path, fsync=True)
        sink(event("created"))
        sink(event("storing"))
        assert [json.loads(line) for line in path.read_text().splitlines()] == [
            event("created").to_dict(),
            event("storing").to_dict(),
        ]
        assert path.stat().st_mode & 0o777 == 0o600

    def test_never_rewrites_earlier_lines(self, tmp_path: Path) -> None:
        """A new sink on an existing file appends after what is there, byte for byte."""
        path = tmp_path / "audit.jsonl"
        path.write_text('{"earlier": true}\n')
        path.chmod(0o600)
        AuditFile(path)(event())
        lines = path.read_text().splitlines()
        assert lines[0] == '{"earlier": true}' and json.loads(lines[1])["run_id"] == "r1"

    def test_concurrent_writers_keep_lines_whole(self, tmp_path: Path) -> None:
        """Eight threads appending 50 events each leave 400 parseable lines."""
        path = tmp_path / "audit.jsonl"
        sink = AuditFile(path)

        def write(n: int) -> None:
            for i in range(50):
                sink(event(run_id=f"r{n}-{i}"))

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        records = list(read_audit(path))
        assert len(records) == 400 and len({r["run_id"] for r in records}) == 400

    def test_read_skips_a_torn_last_line(self, tmp_path: Path) -> None:
        """A crash mid-line leaves a fragment that the reader skips."""
        path = tmp_path / "audit.jsonl"
        AuditFile(path)(event())
        with path.open("a") as handle:
            handle.write('{"event": "run.trans')
        assert [r["run_id"] for r in read_audit(path)] == ["r1"]
        assert list(read_audit(tmp_path / "missing.jsonl")) == []


def test_log_event_is_one_structured_line() -> None:
    """Without an audit file the event becomes an `audit.recorded` log line with every field."""
    with capture_logs() as logs:
        log_event(event("completed"))
    [line] = logs
    assert line["event"] == "audit.recorded"
    assert line["to_state"] == "completed" and line["new_token_id"] == "new"
