"""Rotation metrics from the state store (and MotherDuck's list): Prometheus textfile and EMF.

`snapshot()` reads one account's record and runs into a frozen `AccountMetrics`; the
writers only format it. Two outputs:

* `write_textfile(path, snapshots)`: the Prometheus text format through a dedicated
  `CollectorRegistry` and `write_to_textfile` (atomic rename), for node_exporter's
  textfile collector. Names carry the `rotator_` prefix; no `_created` series.
  `rotator_rotation_outcome_total` is counted over the runs the state store remembers
  (the last 50 per account), so it only grows while history does.
* `emf_records(snapshots, now)`: CloudWatch Embedded Metric Format objects, one per
  account, for Lambda's stdout; outcomes there are this invocation's finished runs (EMF
  sums them), not history.

prometheus_client is imported inside `write_textfile` only (Lambda cold starts).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from rotator.engine.runrecord import AccountRecord, Run, RunState
from rotator.errors import RotatorError
from rotator.events import RunEvent
from rotator.util.fsutil import special_kind

if TYPE_CHECKING:
    from rotator.engine.workflow import Engine
    from rotator.ops.drift import DriftReport

__all__ = [
    "EMF_NAMESPACE",
    "AccountMetrics",
    "RunCollector",
    "emf_for",
    "emf_records",
    "run_outcome",
    "snapshot",
    "write_metrics_file",
    "write_textfile",
]

log = structlog.get_logger("rotator.metrics")

EMF_NAMESPACE = "Rotator"
_ONGOING = frozenset(
    {
        RunState.PROMOTED,
        RunState.AWAITING_REVOKE,
        RunState.REVOKING,
        RunState.ROLLING_BACK,
        RunState.FAILED_NEEDS_ATTENTION,
    }
)
# name -> (help, EMF unit); every one is a per-account gauge.
GAUGES: Mapping[str, tuple[str, str]] = {
    "token_age_seconds": ("Age of the account's current token.", "Seconds"),
    "overlap_seconds": (
        "Time old and new token were both live in the latest run (ongoing: so far).",
        "Seconds",
    ),
    "time_since_last_success_seconds": ("Time since the last completed rotation.", "Seconds"),
    "rotation_duration_seconds": (
        "Start to end of the last finished run (includes any revoke grace).",
        "Seconds",
    ),
    "live_tokens_on_account": ("Live tokens MotherDuck lists for the account.", "Count"),
}


@dataclass(frozen=True, slots=True)
class AccountMetrics:
    """One account's numbers; None means unknown (the sample is left out)."""

    account: str
    token_age_seconds: float | None = None
    overlap_seconds: float | None = None
    time_since_last_success_seconds: float | None = None
    rotation_duration_seconds: float | None = None
    live_tokens_on_account: int | None = None
    outcomes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    drift_findings: Mapping[str, int] | None = None  # severity -> count, when drift was run

    def gauges(self) -> dict[str, float]:
        values = {name: getattr(self, name) for name in GAUGES}
        return {k: float(v) for k, v in values.items() if v is not None}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _since(now: datetime, value: str | None) -> float | None:
    then = _ts(value)
    return None if then is None else max((now - then).total_seconds(), 0.0)


def _ended_at(run: Run) -> datetime | None:
    return _ts(run.events[-1]["at"]) if run.events else _ts(run.updated_at)


def run_outcome(run: Run) -> tuple[str, str] | None:
    """(outcome, step) for a finished run: step is where it ended, or the state that failed."""
    if run.state is RunState.COMPLETED:
        return ("completed" if run.old_token else "adopted", "completed")
    if run.state not in (RunState.ROLLED_BACK, RunState.FAILED_NEEDS_ATTENTION):
        return None
    states = [e.get("state") for e in run.events]
    outcome = "rolled_back" if run.state is RunState.ROLLED_BACK else "needs_attention"
    if "rolling_back" in states:
        i = states.index("rolling_back")
        return outcome, str(states[i - 1]) if i > 0 else "planned"
    return outcome, str(states[-2]) if len(states) > 1 else run.state.value


def _overlap(run: Run | None, now: datetime) -> float | None:
    """New token created -> old token revoked (or rollback done), or so far if ongoing."""
    if run is None or run.new_token is None or run.old_token is None:
        return None
    start = _ts(run.new_token.created_ts)
    if start is None:
        return None
    end = _ended_at(run) if run.terminal else now
    if end is None or (not run.terminal and run.state not in _ONGOING):
        return None  # before promote the old token is the only one in use
    return max((end - start).total_seconds(), 0.0)


def snapshot(
    engine: Engine,
    name: str,
    *,
    live_tokens: int | None = None,
    history: bool = True,
    drift_findings: Mapping[str, int] | None = None,
    record: AccountRecord | None = None,
) -> AccountMetrics:
    """Read one account's state into metrics (reads only); `record`: as just read."""
    if record is None:
        record = engine.account_record(name)
    now = engine.clock()
    runs = _runs(engine, record, history)
    by_id = {r.run_id: r for r in runs}
    active = by_id.get(record.active_run_id or "")
    last = by_id.get(record.last_run_id or "")
    latest = active if active is not None and active.new_token is not None else last
    duration = None
    if last is not None:
        end = _ended_at(last)
        started = _ts(last.started_at)
        if end is not None and started is not None:
            duration = max((end - started).total_seconds(), 0.0)
    current = record.current_token
    outcomes: Counter[tuple[str, str]] = Counter()
    if history:
        outcomes.update(o for o in map(run_outcome, runs) if o is not None)
    return AccountMetrics(
        account=name,
        token_age_seconds=_since(now, current.created_ts) if current else None,
        overlap_seconds=_overlap(latest, now),
        time_since_last_success_seconds=_since(now, record.last_success_at),
        rotation_duration_seconds=duration,
        live_tokens_on_account=live_tokens,
        outcomes=dict(outcomes),
        drift_findings=drift_findings,
    )


def _runs(engine: Engine, record: AccountRecord, history: bool) -> list[Run]:
    wanted = list(record.runs) if history else []
    for run_id in (record.active_run_id, record.last_run_id):
        if run_id and run_id not in wanted:
            wanted.append(run_id)
    return [run for run in map(engine.load_run, wanted) if run is not None]


def write_metrics_file(
    engine: Engine,
    names: Sequence[str],
    path: Path,
    *,
    live: bool,
    drift: Mapping[str, DriftReport] | None = None,
) -> None:
    """Snapshot `names` and write the textfile (`rotate`/`status --metrics-file`).

    The live-token count comes from a drift report when there is one, else (with `live`)
    from one token listing per account; where MotherDuck does not answer it is left out.
    """
    snapshots = []
    for name in names:
        count = None
        report = (drift or {}).get(name)
        if report is not None and report.live_token_ids is not None:
            count = len(report.live_token_ids)
        elif live:
            try:
                count = len(engine.client.list_tokens(name))
            except RotatorError as exc:
                log.warning("metrics.live_tokens_unavailable", account=name, error=str(exc))
        counts = report.counts() if report is not None else None
        snapshots.append(snapshot(engine, name, live_tokens=count, drift_findings=counts))
    write_textfile(path, snapshots)


PROM_PREFIX = "rotator_"


def write_textfile(path: Path, snapshots: Iterable[AccountMetrics]) -> None:
    """Write the Prometheus text format to `path` atomically (node_exporter textfile).

    Every name carries the `rotator_` prefix. The families come from one collector built
    from the snapshots, so each write holds exactly the samples it computed: no
    `*_created` series (prometheus_client's Counter stamps a new one on every write,
    which readers take for a counter reset).
    """
    from prometheus_client import CollectorRegistry, write_to_textfile

    registry = CollectorRegistry()
    registry.register(_SnapshotCollector(list(snapshots)))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        kind = special_kind(os.stat(path).st_mode)
    except OSError:
        kind = None  # absent: it will be made
    if kind is not None:  # the rename would put a file in its place (as root, /dev/null too)
        raise OSError(f"{path} is {kind}, which writing the textfile would replace")
    write_to_textfile(str(path), registry)


class _SnapshotCollector:
    """A prometheus_client collector over fixed snapshots (imported lazily, like the client)."""

    def __init__(self, snapshots: Sequence[AccountMetrics]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for name, (doc, _unit) in GAUGES.items():
            family = GaugeMetricFamily(PROM_PREFIX + name, doc, labels=["account"])
            for snap in self._snapshots:
                value = snap.gauges().get(name)
                if value is not None:
                    family.add_metric([snap.account], value)
            yield family
        totals: Counter[tuple[str, str]] = Counter()
        for snap in self._snapshots:
            totals.update(snap.outcomes)
        outcome = CounterMetricFamily(
            PROM_PREFIX + "rotation_outcome",
            "Finished runs by outcome and the step where they ended or failed.",
            labels=["outcome", "step"],
        )
        for (result, step), count in sorted(totals.items()):
            outcome.add_metric([result, step], count)
        yield outcome
        drift = GaugeMetricFamily(
            PROM_PREFIX + "drift_findings",
            "Drift findings by severity (only when drift was checked).",
            labels=["account", "severity"],
        )
        for snap in self._snapshots:
            for severity, count in sorted((snap.drift_findings or {}).items()):
                drift.add_metric([snap.account, severity], count)
        yield drift


def emf_records(
    snapshots: Iterable[AccountMetrics],
    now: datetime,
    finished: Sequence[tuple[str, str, str, float]] = (),
) -> list[dict[str, Any]]:
    """CloudWatch EMF objects: per account its gauges, plus per finished run an outcome count.

    `finished` holds (account, outcome, step, duration_seconds) of runs that ended in this
    invocation.
    """
    stamp = int(now.timestamp() * 1000)
    records = []
    for snap in snapshots:
        values = snap.gauges()
        if not values:
            continue
        metrics = [{"Name": name, "Unit": GAUGES[name][1]} for name in values]
        records.append(_emf(stamp, [["account"]], metrics, {"account": snap.account, **values}))
    for account, result, step, duration in finished:
        metrics = [
            {"Name": "rotation_outcome", "Unit": "Count"},
            {"Name": "rotation_run_seconds", "Unit": "Seconds"},
        ]
        fields: dict[str, Any] = {
            "account": account,
            "outcome": result,
            "step": step,
            "rotation_outcome": 1,
            "rotation_run_seconds": duration,
        }
        records.append(_emf(stamp, [["account"], ["account", "outcome"]], metrics, fields))
    return records


def _emf(
    stamp: int, dimensions: list[list[str]], metrics: list[dict[str, str]], values: dict[str, Any]
) -> dict[str, Any]:
    directive = {"Namespace": EMF_NAMESPACE, "Dimensions": dimensions, "Metrics": metrics}
    return {"_aws": {"Timestamp": stamp, "CloudWatchMetrics": [directive]}, **values}


class RunCollector:
    """An EventSink remembering which accounts moved and which runs ended (one invocation)."""

    __name__ = "metrics_collector"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, None] = {}
        self._finished: list[tuple[str, str, float]] = []

    def __call__(self, event: RunEvent) -> None:
        with self._lock:
            self._accounts[event.account] = None
            if event.terminal:
                self._finished.append((event.account, event.run_id, event.duration_seconds))

    def drain(self) -> tuple[list[str], list[tuple[str, str, float]]]:
        """The accounts and finished runs (account, run_id, seconds) since the last drain."""
        with self._lock:
            accounts, finished = list(self._accounts), self._finished
            self._accounts, self._finished = {}, []
        return accounts, finished


EMF_CONCURRENCY = 8
"""Accounts whose EMF numbers are gathered at once: each waits on MotherDuck and the store."""


def emf_for(
    engine: Engine,
    accounts: Iterable[str],
    finished: Sequence[tuple[str, str, float]],
    *,
    known: Mapping[str, AccountRecord] | None = None,
) -> list[dict[str, Any]]:
    """EMF records for `accounts` (state + live token count) and the runs that ended.

    `known`: accounts' records the caller has just read (not read again).

    Each account costs a token listing and a state read, both network round trips that
    depend on nothing else: a scheduled pass over N accounts waits for about one of them,
    not N (threads; the MotherDuck client and the store are safe to share).
    """
    names = list(accounts)
    if len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(EMF_CONCURRENCY, len(names))) as pool:
            snapshots = list(pool.map(lambda name: _emf_snapshot(engine, name, known), names))
    else:
        snapshots = [_emf_snapshot(engine, name, known) for name in names]
    ended = []
    for account, run_id, seconds in finished:
        run = engine.load_run(run_id)
        outcome = run_outcome(run) if run is not None else None
        if outcome is not None:
            ended.append((account, outcome[0], outcome[1], seconds))
    return emf_records(snapshots, engine.clock(), ended)


def _emf_snapshot(
    engine: Engine, name: str, known: Mapping[str, AccountRecord] | None
) -> AccountMetrics:
    try:
        live: int | None = len(engine.client.list_tokens(name))
    except RotatorError:
        live = None  # the gauges from the state store are still worth sending
    record = (known or {}).get(name)
    return snapshot(engine, name, live_tokens=live, history=False, record=record)
