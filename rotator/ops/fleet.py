"""Running `rotate` over many accounts: the shard split, progress, and the retention trim.

- `select_shard(names, shard)`: the accounts of shard I of N (a stable hash of each
  username, rotator.schedule.shard_of), so Kubernetes Indexed Jobs or several hosts
  sharing the DynamoDB store split one configured fleet without overlap.
- `run_fleet(names, one, concurrency)`: `one(name)` for every account on a thread pool
  of `fleet_sizing.rotations_in_flight(concurrency)` threads (the caller's MotherDuck
  client holds the requests to `concurrency`: `MotherDuckClient.limit_calls`), with
  progress on stderr (rotator.ops.progress). On a terminal (stderr a TTY, logs rendered
  for people) one status line is redrawn in place — done/total, failures, the slowest
  account — and log lines are written above it. Otherwise (JSON logs, cron, Kubernetes)
  a `fleet.progress` log event every `ROTATOR_PROGRESS_INTERVAL` seconds (default 5) and
  one at the end. stdout (tables, JSON) is never touched.
- `prune_after_pass(engine, outcomes)`: with `[state] keep_runs`, trim the accounts whose
  run finished in this pass through their run index (rotator.ops.retention.prune_accounts).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TextIO, cast

import structlog

from rotator.errors import RotatorError
from rotator.ops.fleet_sizing import bound, placement, rotations_in_flight
from rotator.ops.progress import FleetProgress, LogTicker, TerminalLine, isatty
from rotator.schedule import in_shard
from rotator.util.safeio import SafeStream

if TYPE_CHECKING:
    from rotator.engine.outcome import Outcome
    from rotator.engine.workflow import Engine

__all__ = ["FleetProgress", "prune_after_pass", "run_fleet", "select_shard"]

log = structlog.get_logger("rotator.fleet")


def select_shard(names: Sequence[str], shard: tuple[int, int] | None) -> list[str]:
    """The accounts of shard `(I, N)` in configuration order (all of them without a shard)."""
    return [n for n in names if in_shard(n, shard)]


def run_fleet(
    names: Sequence[str],
    one: Callable[[str], Outcome],
    *,
    concurrency: int,
    log_format: str = "auto",
    stream: TextIO | None = None,
) -> list[Outcome]:
    """`one(name)` for each account, in order of `names`, with progress for several."""
    if len(names) <= 1:
        return [one(name) for name in names]
    progress = FleetProgress(total=len(names))
    # A terminal that went away (or a closed pipe) must not stop the pass.
    err = cast(TextIO, SafeStream(sys.stderr if stream is None else stream))
    live = isatty(err) and log_format != "json"

    def tracked(name: str) -> Outcome:
        progress.started(name)
        result = "error"
        try:
            outcome = one(name)
            result = outcome.result
            return outcome
        finally:
            progress.finished(name, result)

    reporter = TerminalLine(err, progress) if live else LogTicker(progress)
    threads = min(rotations_in_flight(concurrency), len(names))
    # One process's threads on one CPU, as each worker of `--processes` (fleet_sizing).
    cpus = placement(1) if threads > 1 else None
    with (
        bound(cpus[0] if cpus else None),
        reporter.running(),
        ThreadPoolExecutor(max_workers=threads) as pool,
    ):
        return list(pool.map(tracked, names))


def prune_after_pass(engine: Engine, outcomes: Sequence[Outcome]) -> None:
    """With `[state] keep_runs`, trim the run index of accounts whose run ended in this pass.

    Reads each such account's record and its oldest indexed runs; takes a lease only when
    something goes. Failures are logged, never raised: the rotations already happened.
    """
    keep_text = engine.config.state.keep_runs
    if keep_text is None:
        return
    from rotator.config.keep import parse_keep
    from rotator.ops.retention import PrunableStore, prune_accounts

    ended = ("completed", "adopted", "rolled_back")
    finished = [o.account for o in outcomes if o.run_id and o.result in ended]
    if not finished or not isinstance(engine.store, PrunableStore):
        return
    try:
        report = prune_accounts(
            engine.store,
            finished,
            keep=parse_keep(keep_text),
            now=engine.clock(),
            owner=engine.owner,
            lease_ttl=engine.config.defaults.lease_ttl,
        )
    except RotatorError as exc:
        log.warning("state.prune_failed", error=str(exc))
        return
    if report.removed:
        log.info("state.prune_finished", removed=len(report.removed), accounts=len(finished))
