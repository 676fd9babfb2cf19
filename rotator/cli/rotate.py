"""The `rotate` command: select the accounts, probe the admin token, rotate them.

One account, a fleet in this process or split across worker processes (--processes,
rotator/ops/fleet_procs.py), with at most --concurrency MotherDuck requests in flight
(rotator.motherduck.slots); --shard takes shard I of N. Then the run-retention prune, the
outcome table or JSON lines, and the metrics textfile.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from rotator.cli.exitcodes import EXIT_ATTENTION, EXIT_INCOMPLETE, exit_code_for, worst
from rotator.cli.output import print_outcomes, write_metrics
from rotator.cli.wiring import (
    AdminProbe,
    command_config,
    make_engine,
    probe_admin_token,
    start_admin_probe,
)
from rotator.engine import interrupt
from rotator.envsettings import check_fleet
from rotator.errors import ConfigError, RotatorError
from rotator.util import gcpause

if TYPE_CHECKING:
    from rotator.config import Config
    from rotator.engine.workflow import Engine, Outcome
    from rotator.motherduck.slots import CallSlots

__all__ = ["cmd_rotate"]


def _selected(config: Config, names: Sequence[str], all_: bool) -> list[str]:
    if names and all_:
        raise ConfigError("give account names or --all, not both")
    if all_ or not names:
        if not config.accounts:
            raise ConfigError(f"{config.source}: no [[accounts]] configured")
        if not all_ and len(config.accounts) > 1:
            raise ConfigError("several accounts are configured: name them or pass --all")
        return [a.username for a in config.accounts]
    return list(dict.fromkeys(config.account(name).username for name in names))


def cmd_rotate(args: argparse.Namespace, out: TextIO) -> int:
    # rotator.ops.fleet (its thread pool, the progress reporters) is imported by what uses
    # it: one account's rotation, the common scheduled run, needs none of it.
    config = command_config(args)
    # The fleet's environment settings, checked before anything is read or written, and
    # for one account too: a mistake shows on the first try, not on the first fleet pass.
    check_fleet()
    if args.shard and args.usernames:
        raise ConfigError("give account names or --shard, not both")
    selected = _selected(config, args.usernames, args.all or bool(args.shard))
    names = selected
    if args.shard:
        from rotator.ops.fleet import select_shard

        names = select_shard(selected, args.shard)
    engine = make_engine(config, startup_over=False)
    processes = _process_count(args, len(names))
    # The probe's round trip overlaps the run's first reads; each run waits for its answer
    # before its first checkpoint or side effect (wiring.py), and a rejected token is the
    # command's error (exit 2) with nothing written. A plan reads only: asked first.
    probe: AdminProbe | None = None
    if processes == 1 and len(names) > 1:
        _limit_calls(engine, args.concurrency)  # the probe's request holds a slot too
    if args.dry_run:
        probe_admin_token(engine)
    elif processes == 1:
        probe = start_admin_probe(engine)
    else:
        engine.client  # noqa: B018 - built (httpx imported) before the workers fork
    _startup_done()

    one = _rotate_one(engine, args, single=len(names) == 1)
    codes: dict[str, int] = {}
    if probe is not None and len(names) == 1:
        outcomes = [_settled(probe, one, names[0], codes)]
    elif processes > 1:
        from rotator.ops.fleet_procs import run_fleet_processes

        def setup(
            gate: Callable[[], None] | None, slots: CallSlots
        ) -> Callable[[str], tuple[Outcome, int]]:
            worker_engine = make_engine(config)
            worker_engine.effect_gate = gate
            worker_engine.client.limit_calls(slots)
            return _rotate_one(worker_engine, args, single=False)

        pairs = run_fleet_processes(
            names,
            setup,
            processes=processes,
            concurrency=args.concurrency,
            log_format=args.log_format,
            gate=lambda: probe_admin_token(engine),
        )
        outcomes = [outcome for outcome, _ in pairs]
        codes = {outcome.account: code for outcome, code in pairs}
    else:
        from rotator.ops.fleet import run_fleet

        def tracked(name: str) -> Outcome:
            outcome, codes[name] = one(name)
            return outcome

        outcomes = run_fleet(
            names, tracked, concurrency=args.concurrency, log_format=args.log_format
        )
        if probe is not None:
            probe()  # rejected: the command's error, whatever the pass did (reads only)
    if not args.dry_run and not interrupt.stop_requested():  # a stopped pass starts nothing
        _prune(engine, outcomes)
    print_outcomes(outcomes, out, as_json=args.json)
    if args.metrics_file:
        # A stopped pass calls MotherDuck no more: the gauges from the state store only.
        live = not args.dry_run and not interrupt.stop_requested()
        write_metrics(engine, names, args.metrics_file, live=live)
    return worst(list(codes.values()))


def _startup_done() -> None:
    """The collector back on once the probe has built the client (rotator/util/gcpause.py).

    Building the engine leaves the largest import of a rotation to its MotherDuck client:
    httpx. Resumed before it, the collector walked what that import allocates some 20
    times (~3 ms of one account's rotation, on its critical path), and gc.freeze left
    those objects out of the permanent generation for a gen-1 collection during the run
    to walk again. (The run's steps, imported when a rotation starts, cost one gen-0
    collection; importing them here would slow the no-op of an account not due.)
    """
    gcpause.resume()


def _prune(engine: Engine, outcomes: list[Outcome]) -> None:
    """The run-retention trim after the pass (rotator.ops.fleet), with `[state] keep_runs`."""
    if engine.config.state.keep_runs is None:
        return  # nothing to trim: rotator.ops.fleet not imported for it
    from rotator.ops.fleet import prune_after_pass

    prune_after_pass(engine, outcomes)


def _settled(
    probe: AdminProbe, one: Callable[[str], tuple[Outcome, int]], name: str, codes: dict[str, int]
) -> Outcome:
    """One account's rotation with the probe in flight; the probe's failure comes first.

    As when the probe is made before the run: a rejected admin token is the command's
    error (exit 2) whatever the run did meanwhile, which was reads only (the run stops
    at its gate), or nothing at all (not due).
    """
    try:
        outcome, codes[name] = one(name)
    except Exception:
        probe()  # raises the probe's error in place of the run's
        raise
    probe()
    return outcome


def _limit_calls(engine: Engine, calls: int) -> None:
    """A fleet's `--concurrency`: at most `calls` MotherDuck requests of this engine in flight
    (worker processes: each its share, rotator.ops.fleet_worker).

    Its threads are more (rotator.ops.fleet_sizing.rotations_in_flight), so that one
    rotation's checkpoints and backend writes overlap another one's request.
    """
    from rotator.motherduck.slots import CallSlots

    engine.client.limit_calls(CallSlots(calls))


def _process_count(args: argparse.Namespace, accounts: int) -> int:
    """`--processes`, or its automatic value; 1 for a dry run or a single account."""
    if args.dry_run or accounts < 2 or args.processes == 1:
        return 1
    from rotator.ops.fleet_procs import auto_processes, can_fork

    if not can_fork():
        return 1
    wanted: int | None = args.processes
    concurrency: int = args.concurrency
    if wanted is None:
        return auto_processes(accounts, concurrency)
    # No idle worker, and never more calls in flight than --concurrency allows.
    return min(wanted, accounts, concurrency)


def _rotate_one(
    engine: Engine, args: argparse.Namespace, *, single: bool
) -> Callable[[str], tuple[Outcome, int]]:
    """One account's rotation (or plan) as an outcome and its exit status.

    With `single`, an error is raised (the command's one line and exit status); in a
    fleet it becomes that account's outcome and the pass goes on.
    """
    from rotator.engine.outcome import Outcome

    def one(name: str) -> tuple[Outcome, int]:
        if interrupt.stop_requested():
            return interrupt.not_started(name), EXIT_INCOMPLETE
        try:
            if args.dry_run:
                outcome = engine.plan(name, force=args.force)
            else:
                outcome = engine.rotate(name, force=args.force, revoke_now=args.revoke_now)
        except RotatorError as exc:
            if single:
                raise
            code = exit_code_for(exc)
            result = {EXIT_INCOMPLETE: "incomplete", EXIT_ATTENTION: "needs_attention"}.get(
                code, "error"
            )
            return Outcome(name, result, str(exc)), code
        return outcome, outcome.exit_code

    return one
