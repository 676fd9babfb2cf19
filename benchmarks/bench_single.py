"""Benchmark 1: one rotation, rotator vs a hand-written httpx script, simulator at 0 latency.

In-process (no interpreter start-up): rounds interleave the variants, so machine noise
hits all of them alike; medians per variant and ratios within the same run.

    script        hand_script.rotate_once: create, atomic+fsync file write, revoke
    rotator       Engine as rotator.assembly.build_engine builds it (FileStore durable=True,
                  audit trail), file backend, readback check
    rotator_nd    the same with FileStore(durable=False): no checkpoint fsync
    script_nofs   / rotator_nofs: os.fsync replaced by a no-op for everything (the
                  script, the checkpoints and the file backend): "excluding fsync"

A second, instrumented pass wraps the MotherDuck client, the state store and the backend
in timing proxies to split rotator's time into HTTP, checkpoint I/O, backend I/O and the
rest (engine logic, logging, JSON). Then the CLI and the script as fresh subprocesses,
interleaved, at each simulator latency of --cli-latency (0 and 50 ms by default); with
--before DIR, that checkout's CLI as well (--cli-only: this section alone).
The simulator's request log shows which calls each variant made per rotation.

    .venv/bin/python benchmarks/bench_single.py [--rounds 40] [--cli-runs 7] [--profile]
    # only the subprocess section, before/after: another checkout's CLI interleaved too
    git archive main | tar -x -C /tmp/rotator-main
    .venv/bin/python benchmarks/bench_single.py --cli-only --cli-runs 15 --before /tmp/rotator-main
    BENCH_TMP=/dev/shm .venv/bin/python benchmarks/bench_single.py --name single-tmpfs
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hand_script
from _common import (
    PYTHON,
    ROTATOR,
    ChildRun,
    Fleet,
    Simulator,
    make_fleet,
    median,
    run_child,
    save_result,
    workdir,
)

from rotator import log as rlog
from rotator.config import load_config
from rotator.engine.workflow import Engine
from rotator.motherduck.client import MotherDuckClient
from rotator.ops.audit import event_sink
from rotator.secret import Secret
from rotator.state.file import FileStore

_REAL_FSYNC = os.fsync


@contextlib.contextmanager
def no_fsync() -> Iterator[None]:
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = _REAL_FSYNC


def with_sinks(engine: Engine) -> Engine:
    """The event sinks rotator.assembly.build_engine adds: the audit trail (audit.jsonl in the
    state directory, one appended line per transition) and the notifier (none configured)."""
    engine.on_event = event_sink(engine.config, engine)
    return engine


class Timed:
    """Forwards every method call to `inner`, adding its duration to `acc[bucket]`."""

    calls: Counter[str] = Counter()

    def __init__(self, inner: Any, bucket: str, acc: dict[str, float]) -> None:
        self._inner, self._bucket, self._acc = inner, bucket, acc

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            Timed.calls[f"{self._bucket}.{name}"] += 1
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._acc[self._bucket] += time.perf_counter() - started

        return timed


def subprocess_runs(args: argparse.Namespace, sim: Simulator, fleet: Fleet, old: dict[str, str],
                    script_path: Path) -> dict[str, dict[str, Any]]:
    """`rotator rotate U --force` and the script as fresh processes, per --cli-latency.

    The variants (the CLI of this checkout, of --before's if given, and the script) run
    interleaved, their order rotating attempt by attempt, so the machine's noise hits all
    alike; each CLI child names its checkout first on PYTHONPATH (the venv's editable
    install points at one). Wall and CPU (user+sys, wait4) medians, ratios to the script's and, with
    --before, of this checkout's CLI to that one's, also per attempt.
    """
    rot_name, script_name = fleet.names
    devnull = open(os.devnull, "w")  # noqa: SIM115
    pythonpath = os.environ.get("PYTHONPATH", "")
    # This checkout's CLI is the rotator this process imports (an older commit's when
    # run_all.py --baseline put its archive first on PYTHONPATH).
    commands = {"cli": Path(rlog.__file__).resolve().parent.parent}
    if args.before is not None:
        commands["cli_before"] = args.before
    out_path = fleet.workdir / "script.out"

    def run(variant: str) -> ChildRun:
        if variant == "script":
            with open(out_path, "w") as out:
                done = run_child(
                    [PYTHON, str(Path(hand_script.__file__)), sim.url, script_name,
                     old["id"], str(script_path)],
                    env=fleet.env, cwd=fleet.workdir, stdout=out, stderr=devnull, timeout=60)
            assert done.returncode == 0, done
            old["id"] = out_path.read_text().strip()
            return done
        if variant == "python_-c_pass":
            return run_child([PYTHON, "-c", "pass"], env=fleet.env, cwd=fleet.workdir,
                             stdout=devnull, stderr=devnull, timeout=60)
        env = {**fleet.env, "PYTHONPATH": os.pathsep.join(
            p for p in (str(commands[variant]), pythonpath) if p)}
        done = run_child([ROTATOR, "rotate", rot_name, "--force", "--json"], env=env,
                         cwd=fleet.workdir, stdout=devnull, stderr=devnull, timeout=60)
        assert done.returncode == 0, (variant, done)
        return done

    variants = [*commands, "script", "python_-c_pass"]
    by_latency: dict[str, dict[str, Any]] = {}
    for latency in args.cli_latency:
        sim.set_latency(latency)
        for variant in variants:  # warm-up: fills the bytecode cache (see _common)
            run(variant)
        runs: dict[str, list[ChildRun]] = {variant: [] for variant in variants}
        load_before = os.getloadavg()
        for attempt in range(args.cli_runs):
            shift = attempt % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                runs[variant].append(run(variant))
        load_after = os.getloadavg()
        wall = {v: [r.wall for r in rs] for v, rs in runs.items()}
        cpu = {v: [r.cpu for r in rs] for v, rs in runs.items()}
        row: dict[str, Any] = {v: median(w) * 1000 for v, w in wall.items()}
        row["cpu_ms"] = {v: median(c) * 1000 for v, c in cpu.items()}
        row["ratio_cli_vs_script"] = median(wall["cli"]) / median(wall["script"])
        row["pair_ratios"] = [c / s for c, s in zip(wall["cli"], wall["script"], strict=True)]
        if "cli_before" in runs:
            row["before_ratio_cli_vs_script"] = (median(wall["cli_before"])
                                                 / median(wall["script"]))
            row["before_pair_ratios"] = [
                c / s for c, s in zip(wall["cli_before"], wall["script"], strict=True)]
            row["ratio_cli_vs_before"] = median(wall["cli"]) / median(wall["cli_before"])
            row["ratio_cpu_cli_vs_before"] = median(cpu["cli"]) / median(cpu["cli_before"])
        row["loadavg_during"] = {"before": [round(x, 2) for x in load_before],
                                 "after": [round(x, 2) for x in load_after]}
        by_latency[f"{latency * 1000:g}"] = row
    sim.set_latency(0.0)
    devnull.close()
    return by_latency


def cli_only(args: argparse.Namespace) -> dict[str, Any]:
    """Just the subprocess comparison (--cli-only): no in-process rounds."""
    with workdir("single") as base, Simulator(base / "sim") as sim:
        fleet = make_fleet(sim, base / "fleet", 2, prefix="svc_single")
        script_path = fleet.workdir / "secrets" / f"{fleet.names[1]}.json"
        old = {"id": json.loads(script_path.read_text())["token_id"]}
        by_latency = subprocess_runs(args, sim, fleet, old, script_path)
    result = {"subprocess_ms": by_latency.get("0"), "subprocess_at_latency_ms": by_latency}
    save_result(args.name or "single-cli", result)
    print(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cli-runs", type=int, default=7)
    parser.add_argument("--cli-latency", default="0,0.05",
                        type=lambda text: [float(x) for x in text.split(",")],
                        help="simulator latencies (s) for the subprocess runs (default 0,0.05)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of rotator")
    parser.add_argument("--name", default=None,
                        help="results file name (default single, single-cli with --cli-only)")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout of rotator (e.g. `git archive main`) whose CLI "
                        "runs are interleaved with this one's in the subprocess section")
    parser.add_argument("--cli-only", action="store_true",
                        help="only the subprocess section (CLI and script as processes)")
    args = parser.parse_args(argv)
    if args.cli_only:
        return cli_only(args)

    with workdir("single") as base, Simulator(base / "sim") as sim:
        fleet = make_fleet(sim, base / "fleet", 2, prefix="svc_single")
        rot_name, script_name = fleet.names
        config = load_config(fleet.config_path)
        os.environ["MOTHERDUCK_ADMIN_TOKEN"] = sim.admin_token
        # Logs as the CLI writes them (JSON, info) but to /dev/null.
        rlog.configure("json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115
        client = MotherDuckClient(sim.url, Secret(sim.admin_token),
                                  timeout=config.motherduck.timeout.total_seconds())
        durable = with_sinks(Engine(config, client, FileStore(config.state_path)))
        nondurable = with_sinks(Engine(config, client, FileStore(config.state_path,
                                                                 durable=False)))
        http = httpx.Client(timeout=10.0)
        script_path = fleet.workdir / "secrets" / f"{script_name}.json"
        old = {"id": json.loads(script_path.read_text())["token_id"]}

        def script() -> None:
            old["id"] = hand_script.rotate_once(http, sim.url, sim.admin_token, script_name,
                                                old["id"], script_path)

        def rotator(engine: Engine) -> Callable[[], None]:
            def run() -> None:
                outcome = engine.rotate(rot_name, force=True)
                assert outcome.result == "completed", outcome
            return run

        variants: dict[str, tuple[Callable[[], None], bool]] = {
            "script": (script, True),
            "rotator": (rotator(durable), True),
            "rotator_nd": (rotator(nondurable), True),
            "script_nofs": (script, False),
            "rotator_nofs": (rotator(nondurable), False),
        }
        times: dict[str, list[float]] = defaultdict(list)
        os.sync()  # the fleet set-up's writes, flushed before anything is timed
        for rnd in range(args.warmup + args.rounds):
            order = list(variants.items())
            if rnd % 2:
                order.reverse()
            for name, (fn, fsync_on) in order:
                with contextlib.ExitStack() as stack:
                    if not fsync_on:
                        stack.enter_context(no_fsync())
                    started = time.perf_counter()
                    fn()
                    elapsed = time.perf_counter() - started
                if rnd >= args.warmup:
                    times[name].append(elapsed)
        med = {name: median(v) * 1000 for name, v in times.items()}

        # Requests per rotation, from the simulator's own log (both end with one revoke).
        counts = {}
        for name, fn in (("script", script), ("rotator", rotator(durable))):
            sim.clear_requests()
            fn()
            logged = sim.settled_requests("revoke_token", 1)
            counts[name] = dict(Counter(r["route"] for r in logged))

        # Instrumented pass: where does rotator's time go?
        split: dict[str, dict[str, float]] = {}
        for label, fsync_on, store_durable in (("fsync_on", True, True),
                                               ("fsync_off", False, False)):
            acc: dict[str, float] = defaultdict(float)
            engine = with_sinks(Engine(
                config,
                Timed(client, "http", acc),  # type: ignore[arg-type]
                Timed(FileStore(config.state_path, durable=store_durable), "checkpoint", acc),
                backends_for=lambda account, acc=acc: [  # type: ignore[misc]
                    Timed(b, "backend", acc) for b in durable._build_backends(account)
                ],
            ))
            totals: list[float] = []
            parts: dict[str, list[float]] = defaultdict(list)
            with contextlib.ExitStack() as stack:
                if not fsync_on:
                    stack.enter_context(no_fsync())
                Timed.calls.clear()
                for _ in range(args.rounds // 2 + args.warmup):
                    acc.clear()
                    started = time.perf_counter()
                    rotator(engine)()
                    total = time.perf_counter() - started
                    totals.append(total)
                    for key in ("http", "checkpoint", "backend"):
                        parts[key].append(acc[key])
                    parts["other"].append(total - sum(acc.values()))
            split[label] = {k: median(v[args.warmup:]) * 1000 for k, v in parts.items()}
            split[label]["total"] = median(totals[args.warmup:]) * 1000
            rotations = args.rounds // 2 + args.warmup
            calls = {k: v / rotations for k, v in sorted(Timed.calls.items())}

        # The script's own split: HTTP vs file write.
        profile_text = None
        if args.profile:
            prof = cProfile.Profile()
            with no_fsync():
                prof.enable()
                for _ in range(50):
                    rotator(nondurable)()
                prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
            profile_text = out.getvalue()
            print(profile_text)

        # CLI and script as fresh subprocesses (interpreter start-up included), at each
        # simulator latency of --cli-latency (the runs of one latency interleaved).
        rot_path = fleet.workdir / "secrets" / f"{rot_name}.json"
        by_latency = subprocess_runs(args, sim, fleet, old, script_path)
        assert json.loads(rot_path.read_text())["token_id"]
        http.close()
        client.close()

    checkpoint_share = (split["fsync_off"]["checkpoint"] / split["fsync_off"]["total"]
                        * med["rotator_nofs"])
    result = {
        "rounds": args.rounds,
        "median_ms": med,
        "ratio_rotator_vs_script": med["rotator"] / med["script"],
        "ratio_nofsync": med["rotator_nofs"] / med["script_nofs"],
        "overhead_ms": {
            "total": med["rotator"] - med["script"],
            "checkpoint_fsync": med["rotator"] - med["rotator_nd"],
            "backend_and_other_fsync": (med["rotator_nd"] - med["rotator_nofs"])
            - (med["script"] - med["script_nofs"]),
            "excluding_fsync": med["rotator_nofs"] - med["script_nofs"],
            # The fsync-off overhead split: the state store's share of rotator's time (file
            # creation, rename, lease read, JSON: checkpoint I/O; its fraction of the
            # instrumented pass applied to the uninstrumented median) and everything else.
            "excluding_fsync_checkpoint_io": checkpoint_share,
            "excluding_fsync_everything_else": med["rotator_nofs"] - med["script_nofs"]
            - checkpoint_share,
        },
        "split_ms": split,
        "requests_per_rotation": counts,
        "calls_per_rotation": calls,
        # At zero latency (as before); every --cli-latency by its milliseconds.
        "subprocess_ms": by_latency.get("0"),
        "subprocess_at_latency_ms": by_latency,
        "profile": profile_text,
    }
    save_result(args.name or "single", result)
    print(json.dumps({k: v for k, v in result.items() if k != "profile"}, indent=2))
    return result


if __name__ == "__main__":
    main()
