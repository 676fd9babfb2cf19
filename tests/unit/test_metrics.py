"""Metrics: outcomes per run, the Prometheus textfile read back, EMF against its schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from rotator.engine.runrecord import Run, RunState, TokenRef
from rotator.events import RunEvent
from rotator.ops.metrics import (
    AccountMetrics,
    RunCollector,
    emf_records,
    run_outcome,
    write_textfile,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# CloudWatch Embedded Metric Format (the published specification, as a JSON schema).
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1},
                                        "Unit": {"enum": ["Seconds", "Count", "None"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def validate_emf(record: dict[str, Any]) -> None:
    """Schema, plus the rules a schema cannot say: referenced members exist with the right type."""
    jsonschema.validate(record, EMF_SCHEMA)
    for directive in record["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(record[key], str), key
        for metric in directive["Metrics"]:
            assert isinstance(record[metric["Name"]], int | float), metric["Name"]


def finished(state: RunState, states: list[str], old: bool = True) -> Run:
    run = Run(
        "r1",
        "svc_a",
        state,
        "n",
        NOW.isoformat(),
        NOW.isoformat(),
        old_token=TokenRef("old") if old else None,
        new_token=TokenRef("new"),
    )
    run.events = [{"at": NOW.isoformat(), "state": s, "detail": None} for s in states]
    return run


class TestRunOutcome:
    def test_completed_and_adopted(self) -> None:
        """A completed run ends at `completed`; without an old token it was an adoption."""
        assert run_outcome(finished(RunState.COMPLETED, ["planned", "completed"])) == (
            "completed",
            "completed",
        )
        assert run_outcome(finished(RunState.COMPLETED, ["completed"], old=False))[0] == "adopted"  # type: ignore[index]

    def test_rolled_back_names_the_failed_step(self) -> None:
        """A rollback is attributed to the state the run was in when it failed."""
        states = ["planned", "creating", "created", "storing", "stored", "verifying", "rolling_back", "rolled_back"]
        assert run_outcome(finished(RunState.ROLLED_BACK, states)) == ("rolled_back", "verifying")

    def test_needs_attention_after_revoking(self) -> None:
        """A revoke that never took is needs_attention at `revoking`; running runs are None."""
        states = ["promoted", "awaiting_revoke", "revoking", "failed_needs_attention"]
        assert run_outcome(finished(RunState.FAILED_NEEDS_ATTENTION, states)) == (
            "needs_attention",
            "revoking",
        )
        assert run_outcome(finished(RunState.AWAITING_REVOKE, states[:2])) is None


def test_textfile_reads_back(tmp_path: Path) -> None:
    """The textfile parses with prometheus_client's own parser and holds the values written."""
    path = tmp_path / "rotator.prom"
    write_textfile(
        path,
        [
            AccountMetrics(
                "svc_a",
                token_age_seconds=86400.0,
                overlap_seconds=3.5,
                time_since_last_success_seconds=60.0,
                rotation_duration_seconds=4.0,
                live_tokens_on_account=1,
                outcomes={("completed", "completed"): 2, ("rolled_back", "verifying"): 1},
                drift_findings={"critical": 1, "warning": 0, "info": 0},
            ),
            AccountMetrics("svc_b", outcomes={("completed", "completed"): 1}),
        ],
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert samples[("rotator_token_age_seconds", (("account", "svc_a"),))] == 86400.0
    assert samples[("rotator_live_tokens_on_account", (("account", "svc_a"),))] == 1.0
    assert samples[("rotator_rotation_outcome_total", (("outcome", "completed"), ("step", "completed")))] == 3.0
    assert samples[("rotator_rotation_outcome_total", (("outcome", "rolled_back"), ("step", "verifying")))] == 1.0
    assert samples[("rotator_drift_findings", (("account", "svc_a"), ("severity", "critical")))] == 1.0
    assert ("rotator_token_age_seconds", (("account", "svc_b"),)) not in samples  # unknown: left out
    assert all(name.startswith("rotator_") for name, _ in samples)
    assert "_created" not in path.read_text()  # nothing that changes on every write


def test_textfile_is_the_same_for_the_same_state(tmp_path: Path) -> None:
    """Two writes of the same snapshots give byte-identical files: no series is regenerated."""
    snap = AccountMetrics("svc_a", token_age_seconds=5.0, outcomes={("completed", "completed"): 1})
    first, second = tmp_path / "a.prom", tmp_path / "b.prom"
    write_textfile(first, [snap])
    write_textfile(second, [snap])
    assert first.read_text() == second.read_text()


def test_emf_records_follow_the_format() -> None:
    """Gauge lines and outcome lines are valid EMF with the Rotator namespace and account dimension."""
    records = emf_records(
        [AccountMetrics("svc_a", token_age_seconds=10.0, live_tokens_on_account=2), AccountMetrics("svc_b")],
        NOW,
        [("svc_a", "completed", "completed", 4.0)],
    )
    assert len(records) == 2  # svc_b knows nothing: no empty line
    for record in records:
        validate_emf(record)
        assert record["_aws"]["Timestamp"] == int(NOW.timestamp() * 1000)
        assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Rotator"
    assert records[0]["token_age_seconds"] == 10.0
    assert records[1]["outcome"] == "completed" and records[1]["rotation_outcome"] == 1


def test_collector_drains() -> None:
    """The collector remembers moved accounts and finished runs once, then starts over."""
    collector = RunCollector()
    base = {"at": NOW.isoformat(), "account": "svc_a", "run_id": "r1", "trigger": "t", "duration_seconds": 2.0,
            "old_token_id": None, "new_token_id": None, "old_token_created_ts": None, "new_token_created_ts": None}
    collector(RunEvent(from_state="planned", to_state="creating", **base))
    collector(RunEvent(from_state="revoking", to_state="completed", **base))
    assert collector.drain() == (["svc_a"], [("svc_a", "r1", 2.0)])
    assert collector.drain() == ([], [])
