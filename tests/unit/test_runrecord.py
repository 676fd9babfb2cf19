"""Run records round-trip without loss, and the due-decision follows the policy."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from rotator.durations import format_duration, parse_duration
from rotator.engine.runrecord import (
    AccountRecord,
    BackendProgress,
    Run,
    RunState,
    TokenRef,
    rotation_due,
    token_name_for,
)
from rotator.errors import StateError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ref(age_days: float, expire_in_days: float | None = None) -> TokenRef:
    created = (NOW - timedelta(days=age_days)).isoformat()
    expire = (
        (NOW + timedelta(days=expire_in_days)).isoformat() if expire_in_days is not None else None
    )
    return TokenRef(id="t1", created_ts=created, expire_at=expire)


class TestRotationDue:
    def due(self, token: TokenRef | None, force: bool = False) -> bool:
        return rotation_due(
            token,
            now=NOW,
            rotate_after=timedelta(days=30),
            rotate_before_expiry=timedelta(days=7),
            force=force,
        )[0]

    def test_young_token_not_due(self) -> None:
        """A token younger than rotate_after is left alone."""
        assert not self.due(ref(10))

    def test_old_token_due(self) -> None:
        """A token at least rotate_after old is due."""
        assert self.due(ref(30))

    def test_expiring_token_due(self) -> None:
        """A young token that expires within rotate_before_expiry is due."""
        assert self.due(ref(1, expire_in_days=6))
        assert not self.due(ref(1, expire_in_days=8))

    def test_force_and_unknown(self) -> None:
        """--force and an unknown current token always rotate."""
        assert self.due(ref(0), force=True)
        assert self.due(None)

    def test_reason_names_next_due_date(self) -> None:
        """When not due, the reason says when it will be."""
        _, reason = rotation_due(
            ref(10),
            now=NOW,
            rotate_after=timedelta(days=30),
            rotate_before_expiry=timedelta(days=7),
        )
        assert reason.startswith("not due until 2026-12-13")


def test_run_round_trip() -> None:
    """A run survives to_doc/from_doc with its nested records intact."""
    run = Run(
        run_id="r",
        account="svc_a",
        state=RunState.STORING,
        token_name="n",
        started_at="s",
        updated_at="u",
    )
    run.new_token = TokenRef(id="new", fingerprint="abc")
    run.backends["file:/x"] = BackendProgress("staged", {"path": "/x.pending"})
    back = Run.from_doc(run.to_doc())
    assert back == run


def test_unknown_state_is_an_error() -> None:
    """A state this rotator does not know is an error, never a default."""
    doc = Run(
        run_id="r",
        account="a",
        state=RunState.PLANNED,
        token_name="n",
        started_at="s",
        updated_at="u",
    ).to_doc()
    doc["state"] = "teleporting"
    with pytest.raises(StateError, match="unknown state 'teleporting'"):
        Run.from_doc(doc)


def test_token_name_is_deterministic() -> None:
    """The replacement's name derives from the run id so resume can find it."""
    assert (
        token_name_for("svc_a", "1234abcd-5678-90ef-aaaa-bbbbccccdddd")
        == "rotator-svc_a-1234abcd5678"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300s", 300), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("2w", 1209600), (60, 60)],
)
def test_parse_duration(text: object, seconds: int) -> None:
    """Durations accept s/m/h/d/w suffixes and plain seconds."""
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "10", "5 years", "-1s", True, -5, 1.5])
def test_parse_duration_rejects(bad: object) -> None:
    """Anything else is refused with the accepted forms."""
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration() -> None:
    """Formatting picks the largest exact unit."""
    assert format_duration(timedelta(days=1)) == "1d"
    assert format_duration(timedelta(seconds=90)) == "90s"
    assert format_duration(timedelta(0)) == "0s"


class TestToDoc:
    def populated_run(self) -> Run:
        return Run(
            run_id="r1",
            account="svc_a",
            state=RunState.PROMOTING,
            token_name=token_name_for("svc_a", "r1"),
            started_at=NOW.isoformat(),
            updated_at=NOW.isoformat(),
            old_token=TokenRef(id="t0", name="initial"),
            new_token=TokenRef(id="t1", name="n", created_ts=NOW.isoformat(), fingerprint="ab"),
            backends={"file:x": BackendProgress("promoting", {"path": "x", "version": 3})},
            create_attempts=1,
            create_sent_at=1.5,
            lost_token_ids=["t9"],
            hooks_done=["after_store"],
            events=[{"at": NOW.isoformat(), "state": "planned", "detail": None}],
            version=7,
        )

    def test_same_document_as_asdict(self) -> None:
        """to_doc gives exactly what dataclasses.asdict gave, with the state as its value."""
        run = self.populated_run()
        expected = dataclasses.asdict(run) | {"state": "promoting"}
        assert run.to_doc() == expected
        record = AccountRecord(account="svc_a", current_token=TokenRef(id="t1"), runs=["r1"])
        assert record.to_doc() == dataclasses.asdict(record)

    def test_document_does_not_share_containers_with_the_run(self) -> None:
        """Changing the run after to_doc leaves the document as it was (stores may keep it)."""
        run = self.populated_run()
        doc = run.to_doc()
        run.events[0]["detail"] = "changed"
        run.backends["file:x"].receipt["version"] = 4  # type: ignore[index]
        run.lost_token_ids.append("t10")
        assert doc["events"][0]["detail"] is None
        assert doc["backends"]["file:x"]["receipt"]["version"] == 3
        assert doc["lost_token_ids"] == ["t9"]
        assert Run.from_doc(doc).to_doc() == doc

    def test_unknown_value_type_is_refused(self) -> None:
        """A value that is not plain data is a bug, reported rather than written."""
        run = self.populated_run()
        run.backends["file:x"].receipt = {"when": NOW}
        with pytest.raises(TypeError, match="datetime"):
            run.to_doc()


def test_run_to_doc_names_every_field_as_the_generic_walk_does() -> None:
    """Run.to_doc is written field by field: it must hold every field, as `_plain` would."""
    from rotator.engine.runrecord import _plain

    run = TestToDoc().populated_run()
    run.undone, run.remaining, run.failure = ["x"], ["y"], "why"
    run.revoke_not_before, run.revoke_attempts, run.revoke_sent_at = "t", 2, "s"
    assert set(run.to_doc()) == {f.name for f in dataclasses.fields(Run)}
    assert run.to_doc() == _plain(run) | {"state": run.state.value}
