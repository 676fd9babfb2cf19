"""`until`, `stage_only` and Secrets-Manager-driven runs in the runner (issue 13), on fakes.

These are what map Secrets Manager's four steps onto one run: a step never does the next
step's work, a retried step whose run is already past it does nothing, and a scheduled
pass leaves a run Secrets Manager drives to its steps (but for the revoke owed after the
grace).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotator.engine.runrecord import RunState
from tests.unit.test_workflow import USER, FakeTime, World
from tests.unit.test_workflow import fake_time as fake_time  # autouse here too

RUN = "0b7f3c2e-1111-4a2b-9c3d-5e6f7a8b9c0d"


def _step(world: World, until: RunState | None, stage_only: str | None = None) -> str:
    engine = world.engine()
    engine.rotate(
        USER,
        force=True,
        run_id=RUN,
        trigger="secretsmanager",
        until=until,
        stage_only=stage_only,
    )
    run = engine.load_run(RUN)
    assert run is not None
    return run.state.value


@pytest.fixture
def one(tmp_path: Path) -> World:
    w = World(tmp_path, policy='revoke_grace = "1h"')
    w.adopt()
    return w


class TestUntil:
    def test_stage_only_stops_after_its_backend_even_alone(self, one: World) -> None:
        """createSecret with one backend stages it and stops: nothing promoted or revoked."""
        assert _step(one, RunState.STORED, stage_only="memory:b0") == "storing"
        [backend] = one.backends
        assert backend.current is not None and backend.current.token_id == one.old.info.id
        assert backend.pending is not None
        assert len(one.md.live_ids(USER)) == 2

    def test_retried_step_at_until_does_not_advance(self, one: World) -> None:
        """A second setSecret at `stored` stays at `stored` (it used to run to the end)."""
        _step(one, RunState.STORED, stage_only="memory:b0")
        assert _step(one, RunState.STORED) == "stored"
        assert _step(one, RunState.STORED) == "stored"
        assert one.backends[0].current is not None
        assert one.backends[0].current.token_id == one.old.info.id
        assert len(one.md.live_ids(USER)) == 2

    def test_run_past_until_is_left_alone(self, one: World) -> None:
        """A run at `verified` asked to go `until=stored` neither goes back nor forward."""
        _step(one, RunState.STORED, stage_only="memory:b0")
        _step(one, RunState.STORED)
        assert _step(one, RunState.VERIFIED) == "verified"
        assert _step(one, RunState.STORED) == "verified"
        assert _step(one, RunState.STORED, stage_only="memory:b0") == "verified"
        assert one.backends[0].current is not None
        assert one.backends[0].current.token_id == one.old.info.id


class TestScheduleAndSecretsManager:
    def test_schedule_reports_and_leaves_the_run(self, one: World) -> None:
        """A scheduled pass answers in_progress from reads: no save, no lease, no change."""
        _step(one, RunState.STORED, stage_only="memory:b0")
        engine = one.engine()
        lease = engine.store.read_lease(USER)
        outcome = engine.rotate(USER, trigger="schedule")
        assert outcome.result == "in_progress" and RUN in outcome.message
        assert engine.store.saves == 0  # type: ignore[attr-defined]
        assert engine.store.read_lease(USER) == lease  # not taken: same fence, still released
        run = engine.load_run(RUN)
        assert run is not None and run.state is RunState.STORING
        assert one.backends[0].pending is not None
        assert one.backends[0].current is not None
        assert one.backends[0].current.token_id == one.old.info.id

    def test_a_person_may_still_resume_it(self, one: World) -> None:
        """The command line (trigger cli) resumes a run Secrets Manager left behind."""
        _step(one, RunState.STORED, stage_only="memory:b0")
        outcome = one.engine().rotate(USER, revoke_now=True)
        assert outcome.result == "completed"
        assert one.md.live_ids(USER) == one.served_ids()

    def test_schedule_finishes_the_owed_revoke_after_grace(
        self, one: World, fake_time: FakeTime
    ) -> None:
        """At awaiting_revoke the schedule waits out the grace, then revokes the old token."""
        _step(one, RunState.STORED, stage_only="memory:b0")
        _step(one, RunState.STORED)
        _step(one, RunState.VERIFIED)
        assert _step(one, None) == "awaiting_revoke"
        assert one.engine().rotate(USER, trigger="schedule").result == "awaiting_revoke"
        assert one.md.is_live(one.old.secret)
        one.clock.now += timedelta(hours=1, seconds=1)
        assert one.engine().rotate(USER, trigger="schedule").result == "completed"
        assert not one.md.is_live(one.old.secret)
        assert one.md.live_ids(USER) == one.served_ids()
