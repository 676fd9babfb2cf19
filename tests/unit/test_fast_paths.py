"""Shortcuts taken because the benchmarks showed their cost (docs/performance.md).

Each one must give the same answers and keep the same durable records as the long way:
a backend class found once is reused, a not-due account is answered without its lease,
and a transition rewrites the account record only when the record changed.
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import backends
from backends.base import StoredToken
from rotator.config import parse_config
from rotator.engine.workflow import Engine
from rotator.errors import ConfigError
from rotator.secret import Secret
from rotator.state.file import FileStore
from tests.unit.fakes import Crash, FakeMotherDuck, MemoryBackend

USER = "svc_fast"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class RecordingStore(FileStore):
    """A FileStore that remembers every account document it was asked to write."""

    def __init__(self, root: Path, clock: Clock) -> None:
        super().__init__(root, clock=clock, durable=False)
        self.account_docs: list[dict[str, Any]] = []
        self.run_saves = 0
        self.leases_taken = 0

    def acquire_lease(self, account: str, **kwargs: Any) -> Any:
        self.leases_taken += 1
        return super().acquire_lease(account, **kwargs)

    def save(self, lease: Any, *, run: Any = None, account: Any = None) -> Any:
        self.run_saves += run is not None
        if account is not None:
            self.account_docs.append(dict(account))
        return super().save(lease, run=run, account=account)


class World:
    def __init__(self, tmp_path: Path, policy: str = "") -> None:
        self.md = FakeMotherDuck()
        self.clock = Clock()
        self.config = parse_config(
            f'[defaults]\nrotate_after = "30d"\n{policy}\n'
            f'[[accounts]]\nusername = "{USER}"\n'
            '  [[accounts.backends]]\n  type = "file"\n  path = "unused.json"\n',
            base_dir=Path("/nonexistent"),
        )
        self.old = self.md.seed(USER)
        value = StoredToken(Secret(self.old.secret), self.old.info.id, "initial")
        self.backend = MemoryBackend("b0", current=value)
        self.store = RecordingStore(tmp_path / "state", self.clock)

    def engine(self) -> Engine:
        return Engine(
            self.config,
            self.md,  # type: ignore[arg-type]
            self.store,
            clock=self.clock,
            backends_for=lambda account: [self.backend],  # type: ignore[list-item]
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.engine().adopt(USER, w.old.info.id)
    return w


class TestBackendFactoryCache:
    """A plugin's class is looked up in the entry points once; a built-in type never is.

    The plugin here is a registration of FileBackend under another name (`plugin-file`),
    added to what the real lookup returns.
    """

    @pytest.fixture(autouse=True)
    def _fresh_cache(self) -> Any:
        backends.clear_cache()
        yield
        backends.clear_cache()

    @pytest.fixture
    def scans(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The entry-point groups read, one item per read of the installed metadata."""
        from importlib.metadata import EntryPoint, EntryPoints

        seen: list[str] = []
        real = backends.entry_points
        plugin = EntryPoint("plugin-file", "backends.file:FileBackend", "rotator.backends")

        def counting(**kwargs: Any) -> Any:
            seen.append(kwargs.get("group", ""))
            return EntryPoints([*real(**kwargs), plugin])

        monkeypatch.setattr(backends, "entry_points", counting)
        return seen

    def test_found_class_is_reused_without_reading_entry_points_again(
        self, scans: list[str]
    ) -> None:
        """A second lookup of a type returns the same class and reads no metadata."""
        first = backends.load_factory("plugin-file")
        second = backends.load_factory("plugin-file")
        assert first is second and first.__name__ == "FileBackend"
        assert len(scans) == 1

    def test_unknown_type_is_looked_up_again_each_time(self, scans: list[str]) -> None:
        """A failed lookup is not remembered: installing the plugin later makes it work."""
        for _ in range(2):
            with pytest.raises(ConfigError, match="unknown backend type 'nope'"):
                backends.load_factory("nope")
        assert len(scans) >= 2

    def test_clear_cache_reads_entry_points_again(self, scans: list[str]) -> None:
        """clear_cache() makes the next lookup scan the entry points once more."""
        backends.load_factory("plugin-file")
        scans.clear()
        backends.load_factory("plugin-file")
        assert scans == []
        backends.clear_cache()
        backends.load_factory("plugin-file")
        assert scans == ["rotator.backends"]

    @pytest.mark.parametrize(
        ("name", "cls"),
        [
            ("file", "FileBackend"),
            ("vault", "VaultBackend"),
            ("aws-secrets-manager", "SecretsManagerBackend"),
        ],
    )
    def test_a_built_in_type_reads_no_metadata(
        self, scans: list[str], name: str, cls: str
    ) -> None:
        """The built-in types are the built-in classes, found without any entry-point read."""
        assert backends.load_factory(name).__name__ == cls
        assert scans == []

    def test_a_plugin_cannot_take_a_built_in_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A plugin registered as `file` does not replace the built-in file backend."""
        from importlib.metadata import EntryPoint, EntryPoints

        impostor = EntryPoint("file", "tests.unit.fakes:MemoryBackend", "rotator.backends")
        monkeypatch.setattr(backends, "entry_points", lambda **kw: EntryPoints([impostor]))
        assert backends.load_factory("file").__name__ == "FileBackend"
        assert "file" in backends.available_types()


class TestNotDueWithoutLease:
    def test_not_due_account_is_answered_without_its_lease(self, world: World) -> None:
        """A young token with no run in progress: not_due, no lease taken, nothing written."""
        world.engine().rotate(USER, force=True)
        taken, saves = world.store.leases_taken, world.store.run_saves
        lease_before = world.store.read_lease(USER)
        world.md.calls.clear()
        outcome = world.engine().rotate(USER)
        assert outcome.result == "not_due" and outcome.exit_code == 0
        assert outcome.old_token_id == world.backend.current.token_id  # type: ignore[union-attr]
        assert world.store.leases_taken == taken and world.store.run_saves == saves
        assert world.store.read_lease(USER) == lease_before
        assert world.md.calls == []

    def test_due_account_still_rotates_under_the_lease(self, world: World) -> None:
        """Once the token is old enough the same call takes the lease and rotates."""
        world.engine().rotate(USER, force=True)
        world.clock.now += timedelta(days=31)
        taken = world.store.leases_taken
        outcome = world.engine().rotate(USER)
        assert outcome.result == "completed"
        assert world.store.leases_taken == taken + 1

    def test_unfinished_run_is_resumed_under_the_lease(self, tmp_path: Path) -> None:
        """A run waiting out its grace is not 'not due': the lease is taken and it finishes."""
        w = World(tmp_path, policy='revoke_grace = "1h"')
        w.engine().adopt(USER, w.old.info.id)
        first = w.engine().rotate(USER, force=True)
        assert first.result == "awaiting_revoke"
        w.clock.now += timedelta(hours=2)
        taken = w.store.leases_taken
        done = w.engine().rotate(USER)
        assert done.result == "completed" and done.run_id == first.run_id
        assert w.store.leases_taken == taken + 1
        assert w.md.live_ids(USER) == {first.new_token_id}

    def test_account_without_a_managed_token_goes_the_leased_way(self, tmp_path: Path) -> None:
        """No current token recorded: due ('no managed token yet'), so it is rotated."""
        w = World(tmp_path)
        w.backend.current = StoredToken(Secret(w.old.secret))  # a bare value: bootstrap
        outcome = w.engine().rotate(USER)
        assert outcome.result == "adopted" and w.store.leases_taken == 1


class TestAccountRecordWrites:
    def test_transitions_rewrite_the_account_record_only_when_it_changed(
        self, world: World
    ) -> None:
        """Every account document written differs from the one before it (beyond its
        version), and the last one records the finished rotation."""
        world.store.account_docs.clear()
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "completed"
        docs = world.store.account_docs
        assert world.store.run_saves > len(docs) >= 2

        def facts(doc: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in doc.items() if k != "version"}

        for before, after in itertools.pairwise(docs):
            assert facts(before) != facts(after)
            assert after["version"] == before["version"] + 1
        last = world.store.load_account(USER)
        assert last is not None and facts(last) == facts(docs[-1]) | {"schema": 1}
        assert last["active_run_id"] is None and last["last_state"] == "completed"
        assert last["current_token"]["id"] == outcome.new_token_id


class Timeline:
    """One list of what happened, in order: checkpoint writes and outside side effects."""

    def __init__(self, world: World) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        store, md, backend = world.store, world.md, world.backend
        save, create, revoke = store.save, md.create_token, md.revoke_token
        stage, promote = backend.stage, backend.promote

        def saving(lease: Any, *, run: Any = None, account: Any = None) -> Any:
            if run is not None:
                self.entries.append(("save", dict(run)))
            return save(lease, run=run, account=account)

        def effect(name: str, fn: Any) -> Any:
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                self.entries.append((name, {}))
                return fn(*args, **kwargs)

            return wrapped

        store.save = saving  # type: ignore[method-assign]
        md.create_token = effect("create", create)  # type: ignore[method-assign]
        md.revoke_token = effect("revoke", revoke)  # type: ignore[method-assign]
        backend.stage = effect("stage", stage)  # type: ignore[method-assign]
        backend.promote = effect("promote", promote)  # type: ignore[method-assign]

    def last_save_before(self, index: int) -> dict[str, Any]:
        return next(doc for kind, doc in reversed(self.entries[:index]) if kind == "save")


class TestIntentWrites:
    def test_every_side_effect_follows_its_written_intent(self, world: World) -> None:
        """Before each create, stage, promote and revoke, the last run document written
        already records that intent; the last one written records the completed run."""
        timeline = Timeline(world)
        outcome = world.engine().rotate(USER, force=True)
        assert outcome.result == "completed"
        kinds = [kind for kind, _ in timeline.entries if kind != "save"]
        assert kinds == ["create", "stage", "promote", "revoke"]
        label = world.backend.label
        for index, (kind, _) in enumerate(timeline.entries):
            if kind == "save":
                continue
            doc = timeline.last_save_before(index)
            if kind == "create":
                assert doc["state"] == "creating" and doc["create_attempts"] == 1
            elif kind == "stage":
                assert doc["state"] == "storing" and doc["backends"][label]["state"] == "staging"
            elif kind == "promote":
                assert doc["backends"][label]["state"] == "promoting"
            else:
                assert doc["state"] == "revoking" and doc["revoke_attempts"] == 1
        assert timeline.entries[-1][0] == "save"
        assert timeline.entries[-1][1]["state"] == "completed"

    def test_steps_that_write_their_intent_first_get_no_checkpoint_of_their_own(
        self, world: World
    ) -> None:
        """creating, storing, promoting and revoking reach the store with the step's own
        intent write, never as a bare transition; every state still appears in the run's
        events."""
        timeline = Timeline(world)
        world.engine().rotate(USER, force=True)
        docs = [doc for kind, doc in timeline.entries if kind == "save"]
        for doc in docs:
            if doc["state"] == "creating":
                assert doc["create_attempts"] >= 1
            if doc["state"] in ("storing", "promoting"):
                assert doc["backends"]
            if doc["state"] == "revoking":
                assert doc["revoke_attempts"] >= 1
        states = [event["state"] for event in docs[-1]["events"]]
        assert states == [
            "planned", "creating", "created", "storing", "stored", "verifying", "verified",
            "promoting", "promoted", "awaiting_revoke", "revoking", "completed",
        ]  # fmt: skip


class TornSaveStore(FileStore):
    """Dies inside its n-th save that writes both documents: after the run document, before
    the account document (FileStore writes them one after the other)."""

    def __init__(self, root: Path, clock: Clock, tear_at: int) -> None:
        super().__init__(root, clock=clock, durable=False)
        self.tear_at, self.both = tear_at, 0
        self._pid_alive = lambda pid: False  # type: ignore[method-assign]

    def save(self, lease: Any, *, run: Any = None, account: Any = None) -> Any:
        if run is not None and account is not None:
            self.both += 1
            if self.both == self.tear_at:
                super().save(lease, run=run)
                raise Crash(f"between the documents of save {self.both}")
        return super().save(lease, run=run, account=account)


class TestTornSaves:
    @pytest.mark.parametrize("tear_at", range(1, 6))
    def test_a_save_torn_between_its_documents_is_repaired_on_resume(
        self, tmp_path: Path, tear_at: int
    ) -> None:
        """Whichever two-document save dies halfway, the resumed run ends with the account
        record naming the token every backend serves, and only that token live."""
        w = World(tmp_path)
        w.engine().adopt(USER, w.old.info.id)

        def engine(store: FileStore) -> Engine:
            return Engine(
                w.config,
                w.md,  # type: ignore[arg-type]
                store,
                clock=w.clock,
                backends_for=lambda account: [w.backend],  # type: ignore[list-item]
            )

        with contextlib.suppress(Crash):
            engine(TornSaveStore(w.store.root, w.clock, tear_at)).rotate(USER, force=True)
        outcome = engine(TornSaveStore(w.store.root, w.clock, 0)).rotate(USER)
        if outcome.result == "not_due":  # the tear came after the run had finished
            outcome = engine(TornSaveStore(w.store.root, w.clock, 0)).rotate(USER, force=True)
        assert outcome.result == "completed"
        record = w.store.load_account(USER)
        assert record is not None and record["active_run_id"] is None
        served = w.backend.current
        assert served is not None and record["current_token"]["id"] == served.token_id
        assert w.md.live_ids(USER) == {served.token_id}
