"""The cooperative stop (rotator.engine.interrupt), streams that survive their reader, 80-column tables."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.engine import interrupt
from rotator.engine.runrecord import RunState
from rotator.tables import fit_widths, format_time, plain_table
from rotator.util.safeio import SafeStream
from tests.unit.fakes import MemoryBackend
from tests.unit.test_workflow import USER, World


@pytest.fixture(autouse=True)
def _no_stop_left() -> Iterator[None]:
    interrupt.clear()
    yield
    interrupt.clear()


class StopWhenStaged(MemoryBackend):
    """A backend whose stage call is where the signal arrives (the call in flight)."""

    def stage(self, record: Any, *, run_id: str) -> Any:
        receipt = super().stage(record, run_id=run_id)
        interrupt.request_stop(signal.SIGTERM)
        return receipt


class TestRunnerStops:
    def test_stop_mid_step_finishes_the_call_and_stops_at_the_boundary(
        self, tmp_path: Path
    ) -> None:
        """A stop during store: the stage completes, nothing is verified or promoted."""
        world = World(tmp_path)
        world.backends = [StopWhenStaged("b0", current=world.backends[0].current)]
        world.adopt()
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "interrupted" and outcome.exit_code == 3
        assert outcome.state == RunState.STORED.value
        assert "SIGTERM" in outcome.message
        backend = world.backends[0]
        assert backend.pending is not None  # the call in flight finished
        assert backend.current is not None and backend.current.token_id == world.old.info.id
        assert world.md.live_ids(USER) == {world.old.info.id, outcome.new_token_id}
        # Resumed without the flag: the run finishes from where it stopped.
        interrupt.clear()
        done = world.engine().rotate(USER)
        assert done.result == "completed" and done.new_token_id == outcome.new_token_id
        assert world.md.live_ids(USER) == {outcome.new_token_id}

    def test_stop_before_the_run_starts_nothing(self, tmp_path: Path) -> None:
        """With the flag set, a due account gets no run, no token, no lease left behind."""
        world = World(tmp_path)
        world.adopt()
        interrupt.request_stop(signal.SIGINT)
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "not_started" and outcome.exit_code == 3
        assert world.md.live_ids(USER) == {world.old.info.id}
        assert world.engine().account_record(USER).active_run_id is None


class TestSignalHandlers:
    def test_cooperative_signals_set_the_flag_and_restore(self) -> None:
        """Inside the block a real SIGTERM only sets the flag; outside, the old handler is back."""
        before = signal.getsignal(signal.SIGTERM)
        with interrupt.cooperative_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            assert interrupt.stop_requested() and interrupt.stop_reason() == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) is before

    def test_abrupt_signals_raise(self) -> None:
        """Read-only commands: a SIGTERM raises Interrupted carrying the signal."""
        with pytest.raises(interrupt.Interrupted) as info, interrupt.abrupt_signals():
            os.kill(os.getpid(), signal.SIGTERM)
        assert info.value.signum == signal.SIGTERM


class _Broken(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


class TestSafeStream:
    def test_broken_pipe_is_swallowed_and_remembered(self) -> None:
        """Writes to a vanished reader neither raise nor retry; `broken` says so."""
        stream = SafeStream(_Broken())
        assert stream.write("x") == 1
        stream.flush()
        assert stream.broken and not stream.isatty()

    def test_a_real_closed_pipe(self) -> None:
        """A pipe whose read end is closed: the write end is sent to /dev/null."""
        read_fd, write_fd = os.pipe()
        os.close(read_fd)
        with os.fdopen(write_fd, "w") as raw:
            stream = SafeStream(raw)
            stream.write("x" * 100_000)
            stream.flush()
            assert stream.broken
            raw.write("more")  # the descriptor now points at /dev/null: no error at close

    def test_healthy_stream_passes_through(self) -> None:
        buffer = io.StringIO()
        stream = SafeStream(buffer)
        stream.write("hello\n")
        assert buffer.getvalue() == "hello\n" and not stream.broken


class TestTables:
    def test_fits_80_columns_and_keeps_ids_whole(self) -> None:
        """Long cells wrap between words; the kept id column is never cut."""
        run_id = "0b6f3f5e-2b1c-4f7e-9a55-3f0e3c1d2e4f"
        rows = [[run_id, "2026-11-29T23:43:16Z", "needs_attention " * 3]]
        out = io.StringIO()
        plain_table(out, ["RUN", "STARTED", "STATE"], rows, keep=(0,), notes=["x " * 60])
        lines = out.getvalue().splitlines()
        assert all(len(line) <= 80 for line in lines)
        assert run_id in lines[1] and "2026-11-29T23:43:16Z" in lines[1]

    def test_narrow_table_is_untouched(self) -> None:
        assert fit_widths(["A", "B"], [["x", "yy"]]) == [1, 2]

    def test_one_time_format(self) -> None:
        """ISO strings with offsets or microseconds, and naive datetimes, print the same way."""
        assert format_time("2026-11-29T23:43:16.123456+00:00") == "2026-11-29T23:43:16Z"
        assert format_time("2026-11-30T00:43:16+01:00") == "2026-11-29T23:43:16Z"
        assert format_time(None) == "-" and format_time(None, "never") == "never"
