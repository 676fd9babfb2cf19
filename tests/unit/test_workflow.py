"""The rotation state machine against in-memory fakes: every transition, every crash point.

The fakes keep the outside world's truth, so each test asserts what MotherDuck and the
backend hold — not what the engine says about itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backends.base import StoredToken
from rotator.config import Config, parse_config
from rotator.engine.runrecord import RunState
from rotator.engine.workflow import Engine, Outcome
from rotator.errors import ConfigError
from rotator.secret import Secret
from rotator.state.file import FileStore
from tests.unit.fakes import Crash, FakeMotherDuck, FakeToken, MemoryBackend

USER = "svc_a"


def make_config(policy: str = "") -> Config:
    text = f"""
[defaults]
rotate_after = "30d"
{policy}

[[accounts]]
username = "{USER}"
  [[accounts.backends]]
  type = "file"
  path = "unused.json"
"""
    return parse_config(text, base_dir=Path("/nonexistent"))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class CrashingStore(FileStore):
    """A FileStore that dies before (or just after) its n-th save."""

    def __init__(self, root: Path, clock: Clock, crash_at: int | None, after: bool) -> None:
        super().__init__(root, clock=clock, durable=False)
        self.crash_at, self.after, self.saves = crash_at, after, 0

    def save(self, lease: Any, **docs: Any) -> Any:
        self.saves += 1
        if self.saves == self.crash_at and not self.after:
            raise Crash(f"before save {self.saves}")
        result = super().save(lease, **docs)
        if self.saves == self.crash_at and self.after:
            raise Crash(f"after save {self.saves}")
        return result


class World:
    """MotherDuck + backends + state dir that outlive any one (crashing) engine."""

    def __init__(self, tmp_path: Path, policy: str = "", backends: int = 1) -> None:
        self.md = FakeMotherDuck()
        self.clock = Clock()
        self.config = make_config(policy)
        self.root = tmp_path / "state"
        self.old: FakeToken = self.md.seed(USER)
        value = StoredToken(Secret(self.old.secret), self.old.info.id, "initial")
        self.backends = [MemoryBackend(f"b{i}", current=value) for i in range(backends)]

    def engine(self, crash_at: int | None = None, after: bool = False) -> Engine:
        store = CrashingStore(self.root, self.clock, crash_at, after)
        # Each engine is a new "process": the dead one's lease has a dead pid.
        store._pid_alive = lambda pid: False  # type: ignore[method-assign]
        return Engine(
            self.config, self.md, store, clock=self.clock, backends_for=lambda a: self.backends
        )  # type: ignore[arg-type]

    def adopt(self) -> None:
        self.engine().adopt(USER, self.old.info.id)

    def assert_every_backend_works(self) -> None:
        """I1: whatever each backend serves is a token MotherDuck accepts."""
        for backend in self.backends:
            assert backend.current is not None
            assert self.md.is_live(backend.current.token.reveal()), (
                f"{backend.label} serves a dead token"
            )

    def served_ids(self) -> set[str]:
        return {b.current.token_id for b in self.backends if b.current and b.current.token_id}


class FakeTime:
    """Stands in for the `time` module of the create step and the sweeps: sleeping advances the clocks."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds


@pytest.fixture(autouse=True)
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Every engine here runs on fake time: a settle window never costs real seconds."""
    fake = FakeTime()
    monkeypatch.setattr("rotator.engine.forward.time", fake)
    monkeypatch.setattr("rotator.engine.sweep.time", fake)
    return fake


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.adopt()
    return w


class TestHappyPaths:
    def test_rotation_completes_and_revokes_old(self, world: World) -> None:
        """A due rotation leaves MotherDuck with only the new token, which the backend serves."""
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "completed" and outcome.exit_code == 0
        assert world.md.live_ids(USER) == {outcome.new_token_id} == world.served_ids()
        assert not world.md.tokens[world.old.info.id].live
        world.assert_every_backend_works()

    def test_bootstrap_adopts_without_revoking(self, tmp_path: Path) -> None:
        """With no known current token, the first managed token is made and nothing revoked.

        The backend holds a bare value (no token id); one naming a live token the store does
        not know is refused instead (test_bootstrap_refuses_a_live_unknown_token_id).
        """
        w = World(tmp_path)
        w.backends[0].current = StoredToken(Secret(w.old.secret))
        outcome = w.engine().rotate(USER)
        assert outcome.result == "adopted"
        assert w.md.live_ids(USER) == {w.old.info.id, outcome.new_token_id}
        assert w.served_ids() == {outcome.new_token_id}

    def test_bootstrap_refuses_a_live_unknown_token_id(self, tmp_path: Path) -> None:
        """A backend names a live token the (empty) store does not know: refuse, mint nothing."""
        w = World(tmp_path)
        with pytest.raises(ConfigError, match=f"rotator adopt {USER} --token-id {w.old.info.id}"):
            w.engine().rotate(USER, force=True)
        assert w.md.live_ids(USER) == {w.old.info.id}
        w.adopt()
        assert w.engine().rotate(USER, force=True).result == "completed"

    def test_not_due_touches_nothing(self, world: World) -> None:
        """A young token is left alone: no MotherDuck calls at all."""
        world.engine().rotate(USER, force=True)
        world.md.calls.clear()
        outcome = world.engine().rotate(USER)
        assert outcome.result == "not_due"
        assert world.md.calls == []

    def test_dry_run_makes_no_mutating_call(self, world: World) -> None:
        """plan() reads only: no create or revoke, and the backend is unchanged."""
        before = world.backends[0].current
        outcome = world.engine().plan(USER, force=True)
        assert outcome.result == "would_rotate"
        assert {c[0] for c in world.md.calls} <= {"list"}
        assert world.backends[0].current is before and world.backends[0].pending is None

    def test_grace_period_defers_revoke(self, tmp_path: Path) -> None:
        """With revoke_grace, both tokens stay live until a later run after the grace."""
        w = World(tmp_path, policy='revoke_grace = "1h"')
        w.adopt()
        first = w.engine().rotate(USER, force=True)
        assert first.result == "awaiting_revoke" and first.exit_code == 0
        assert w.md.live_ids(USER) == {w.old.info.id, first.new_token_id}
        assert w.engine().rotate(USER).result == "awaiting_revoke"
        w.clock.now += timedelta(hours=1)
        done = w.engine().rotate(USER)
        assert done.result == "completed" and done.run_id == first.run_id
        assert w.md.live_ids(USER) == {first.new_token_id}

    def test_revoke_now_skips_grace(self, tmp_path: Path) -> None:
        """--revoke-now finishes a run waiting out its grace."""
        w = World(tmp_path, policy='revoke_grace = "1h"')
        w.adopt()
        w.engine().rotate(USER, force=True)
        assert w.engine().rotate(USER, revoke_now=True).result == "completed"


class TestFailures:
    def test_failed_readback_rolls_back(self, world: World) -> None:
        """A backend that does not hold the new token fails verify; all goes back to old."""
        backend = world.backends[0]
        original = backend.read_staged
        backend.read_staged = lambda run_id: None  # type: ignore[method-assign]
        outcome = world.engine().rotate(USER, force=True)
        backend.read_staged = original  # type: ignore[method-assign]
        assert outcome.result == "rolled_back" and outcome.exit_code == 1
        assert world.md.live_ids(USER) == {world.old.info.id}
        assert world.served_ids() == {world.old.info.id} and backend.pending is None

    def test_failed_promote_on_second_backend_restores_first(self, tmp_path: Path) -> None:
        """When the second backend cannot promote, the first is rolled back too."""
        w = World(tmp_path, backends=2)
        w.adopt()
        w.backends[1].fail.add("promote")
        outcome = w.engine().rotate(USER, force=True)
        assert outcome.result == "rolled_back"
        assert w.served_ids() == {w.old.info.id}
        assert w.md.live_ids(USER) == {w.old.info.id}
        w.assert_every_backend_works()

    def test_unfinished_rollback_keeps_new_token_valid(self, tmp_path: Path) -> None:
        """If a backend cannot be restored, the new token is not revoked, and a rerun finishes."""
        w = World(tmp_path, backends=2)
        w.adopt()
        w.backends[1].fail.update({"promote", "rollback"})
        outcome = w.engine().rotate(USER, force=True)
        assert outcome.result == "needs_attention" and outcome.exit_code == 4
        assert "restore memory:b1" in outcome.message
        w.assert_every_backend_works()
        assert outcome.new_token_id in w.md.live_ids(USER)
        w.backends[1].fail.clear()
        again = w.engine().rotate(USER)
        assert again.result == "rolled_back" and again.run_id == outcome.run_id
        assert w.md.live_ids(USER) == {w.old.info.id} == w.served_ids()

    def test_outcome_unknown_create_is_reconciled(self, world: World) -> None:
        """A create whose answer was lost is found by name and revoked; one replacement survives."""
        world.md.unknown_after_create = 1
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "completed"
        assert world.md.live_ids(USER) == {outcome.new_token_id}
        created = [c for c in world.md.calls if c[0] == "create"]
        assert len(created) == 2

    def test_in_flight_create_that_commits_late_is_awaited_and_revoked(
        self, world: World, fake_time: FakeTime
    ) -> None:
        """I2: a create with no answer that commits after two empty listings is found by
        listing until it shows up, revoked, and replaced; only one replacement is left live."""
        world.md.late_create_after_lists = 2
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "completed"
        assert world.md.live_ids(USER) == {outcome.new_token_id} == world.served_ids()
        late = [t for t in world.md.tokens.values() if t.info.id != outcome.new_token_id]
        assert any(not t.live and t.info.name.startswith("rotator-") for t in late)
        assert len([c for c in world.md.calls if c[0] == "create"]) == 2
        assert 0 < fake_time.slept < 60  # waited for the commit, not the whole window

    def test_in_flight_create_that_never_commits_waits_out_the_window(
        self, world: World, fake_time: FakeTime
    ) -> None:
        """The settle window is bounded: nothing ever commits, so after create_settle the run
        mints again and completes."""
        world.md.late_create_after_lists = None
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "completed"
        assert world.md.live_ids(USER) == {outcome.new_token_id}
        assert 55 <= fake_time.slept <= 61  # the default create_settle is 60 s from sending

    def test_resume_after_a_kill_during_create_awaits_the_in_flight_request(
        self, world: World, fake_time: FakeTime
    ) -> None:
        """A process killed while its create was in flight: the next run waits for that create
        to land before minting, so the late token cannot outlive the rotation."""
        world.md.late_create_after_lists = 1
        world.md.crash_after.add("create")
        with pytest.raises(Crash):
            world.engine().rotate(USER, force=True)
        world.md.crash_after.clear()
        outcome = finish(world)
        assert outcome.result == "completed"
        assert world.md.live_ids(USER) == {outcome.new_token_id} == world.served_ids()
        assert len(world.md.tokens) == 3  # the old, the late one (revoked), the replacement
        assert 0 < fake_time.slept < 60

    def test_abort_refuses_a_promoted_run(self, tmp_path: Path) -> None:
        """`abort` during the grace refuses: consumers may hold the promoted new token."""
        w = World(tmp_path, policy='revoke_grace = "1h"')
        w.adopt()
        first = w.engine().rotate(USER, force=True)
        assert first.run_id is not None
        with pytest.raises(ConfigError, match="--revoke-now"):
            w.engine().abort(USER, first.run_id)
        assert w.md.live_ids(USER) == {w.old.info.id, first.new_token_id}
        assert w.served_ids() == {first.new_token_id}


def finish(world: World, limit: int = 10) -> Outcome:
    """Rerun like cron would until the rotation ends; --force only if no run was recorded."""
    for _ in range(limit):
        record = world.engine().account_record(USER)
        started = record.active_run_id is not None or record.last_state == "completed"
        try:
            outcome = world.engine().rotate(USER, force=not started)
        except Crash:
            continue
        if outcome.result == "not_due" and record.last_state == "completed":
            last = world.engine().load_run(record.last_run_id or "")
            assert last is not None
            return Outcome(
                USER,
                "completed",
                "",
                run_id=last.run_id,
                new_token_id=last.new_token.id if last.new_token else None,
            )
        if outcome.result != "incomplete":
            return outcome
    raise AssertionError("rotation never finished")


def count_saves(tmp_path: Path) -> int:
    w = World(tmp_path / "count")
    w.adopt()
    engine = w.engine()
    engine.rotate(USER, force=True)
    store: CrashingStore = engine.store  # type: ignore[assignment]
    return store.saves


@pytest.mark.parametrize("after", [False, True], ids=["before-save", "after-save"])
def test_crash_at_every_checkpoint_then_resume(tmp_path: Path, after: bool) -> None:
    """Killing the run at every checkpoint write, then rerunning, always ends rotated (I1-I3)."""
    total = count_saves(tmp_path)
    assert total > 10
    for n in range(1, total + 1):
        w = World(tmp_path / f"{after}-{n}")
        w.adopt()
        with pytest.raises(Crash):
            w.engine(crash_at=n, after=after).rotate(USER, force=True)
        w.assert_every_backend_works()
        outcome = finish(w)
        assert outcome.result == "completed", (n, outcome)
        assert w.md.live_ids(USER) == {outcome.new_token_id} == w.served_ids(), n
        assert not w.md.tokens[w.old.info.id].live
        w.assert_every_backend_works()


@pytest.mark.parametrize("effect", ["create", "stage", "promote", "revoke"])
def test_crash_right_after_each_side_effect(tmp_path: Path, effect: str) -> None:
    """Dying after a side effect but before its outcome is recorded is reconciled on resume."""
    w = World(tmp_path)
    w.adopt()
    target: Any = w.md if effect in ("create", "revoke") else w.backends[0]
    target.crash_after.add(effect)
    with pytest.raises(Crash):
        w.engine().rotate(USER, force=True)
    target.crash_after.clear()
    w.assert_every_backend_works()
    outcome = finish(w)
    assert outcome.result == "completed"
    assert w.md.live_ids(USER) == {outcome.new_token_id} == w.served_ids()
    if effect == "create":
        # The first replacement's secret died with the process: revoked, a second one made.
        assert len([c for c in w.md.calls if c[0] == "create"]) == 2


def test_run_states_recorded_in_order(world: World) -> None:
    """A full run passes through every forward state, in the documented order."""
    outcome = world.engine().rotate(USER, force=True)
    assert outcome.run_id is not None
    run = world.engine().load_run(outcome.run_id)
    assert run is not None
    states = [e["state"] for e in run.events]
    assert states == [
        s.value
        for s in (
            RunState.PLANNED,
            RunState.CREATING,
            RunState.CREATED,
            RunState.STORING,
            RunState.STORED,
            RunState.VERIFYING,
            RunState.VERIFIED,
            RunState.PROMOTING,
            RunState.PROMOTED,
            RunState.AWAITING_REVOKE,
            RunState.REVOKING,
            RunState.COMPLETED,
        )
    ]


def test_checkpoints_never_hold_the_secret(world: World) -> None:
    """No state file contains any token secret (I5)."""
    world.engine().rotate(USER, force=True)
    blob = b"".join(p.read_bytes() for p in world.root.rglob("*") if p.is_file())
    for token in world.md.tokens.values():
        assert token.secret.encode() not in blob
