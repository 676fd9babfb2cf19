"""Benchmark: CPU per rotation, this checkout vs another (issue 16, round 3), interleaved.

Two measurements, each alternating the two checkouts run by run (order reversed every
other round), the load average recorded per run:

    single   a child interpreter rotates one account N times in-process (Engine as
             bench_single builds it: FileStore, audit trail, JSON logs at info to
             /dev/null), os.fsync a no-op, simulator at 0 ms: CPU (process_time) and wall
             per rotation, so the engine's own cost is not hidden by disk waits
    fleet    `rotator rotate --all --force --concurrency C --json` over N adopted accounts
             at a simulator latency (bench_fleet.time_rotator): wall / critical path and
             CPU per rotation (user + sys of the process tree, from wait4)

`--before DIR` is the other checkout's root (a `git archive`, first on PYTHONPATH for
its runs); default: `git archive main` into a temporary directory.

    .venv/bin/python benchmarks/bench_cpu.py --accounts 200 --latency 0.05 --concurrency 32
    .venv/bin/python benchmarks/bench_cpu.py --before /tmp/main-tree --repeats 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    ROOT,
    Simulator,
    make_fleet,
    median,
    rotate_extra_args,
    save_result,
    workdir,
)
from bench_fleet import fleet_setup, time_rotator


def single_child(rotations: int) -> None:
    """In a child interpreter: CPU and wall per rotation of one account, printed as JSON."""
    from bench_single import with_sinks

    from rotator import log as rlog
    from rotator.config import load_config
    from rotator.engine.workflow import Engine
    from rotator.motherduck.client import MotherDuckClient
    from rotator.secret import Secret
    from rotator.state.file import FileStore

    with workdir("cpu-single") as base, Simulator(base / "sim") as sim:
        fleet = make_fleet(sim, base / "fleet", 1, prefix="svc_cpu")
        name = fleet.names[0]
        config = load_config(fleet.config_path)
        os.environ["MOTHERDUCK_ADMIN_TOKEN"] = sim.admin_token
        rlog.configure("json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115
        client = MotherDuckClient(sim.url, Secret(sim.admin_token), timeout=10)
        engine = with_sinks(Engine(config, client, FileStore(config.state_path)))
        os.fsync = lambda fd: None
        for _ in range(5):
            engine.rotate(name, force=True)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rotations):
            outcome = engine.rotate(name, force=True)
            assert outcome.result == "completed", outcome
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"cpu_ms": cpu / rotations * 1000, "wall_ms": wall / rotations * 1000}))


def run_single(tree: str, rotations: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": tree}
    load = os.getloadavg()[0]
    out = subprocess.run(
        [PYTHON, __file__, "--single-child", str(rotations)],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "load1": round(load, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="the other checkout (default: main)")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=8, help="fleet runs per checkout")
    parser.add_argument("--single-rounds", type=int, default=4)
    parser.add_argument("--rotations", type=int, default=100, help="per single round")
    parser.add_argument("--name", default="cpu")
    parser.add_argument("--rotate-args", default=None,
                        help="extra arguments for the fleet's rotate --all (default: "
                             "$BENCH_ROTATE_ARGS), e.g. '--processes 1'")
    parser.add_argument("--single-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single_child is not None:
        single_child(args.single_child)
        return {}

    with tempfile.TemporaryDirectory(prefix="rotator-before-") as scratch:
        before = args.before
        if before is None:
            before = scratch
            archive = subprocess.run(["git", "archive", "main"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", scratch], input=archive, check=True)
        trees = {"before": str(Path(before).resolve()), "after": str(ROOT)}

        single: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for rnd in range(args.single_rounds):
            order = list(trees.items()) if rnd % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                single[name].append(run_single(tree, args.rotations))
                print("single", name, json.dumps(single[name][-1]), flush=True)

        fleet: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        with fleet_setup(args.accounts, args.latency, script=False) as setup:
            for rnd in range(args.repeats):
                order = list(trees.items()) if rnd % 2 == 0 else list(trees.items())[::-1]
                for name, tree in order:
                    env = {**setup.fleet.env, "PYTHONPATH": tree}
                    load = os.getloadavg()[0]
                    run = time_rotator(setup.sim, dataclasses.replace(setup.fleet, env=env),
                                       args.accounts, args.latency, args.concurrency,
                                       rotate_extra_args(args.rotate_args), 900, None,
                                       sample_every=5)
                    assert run["returncode"] == 0, run
                    row = {key: run[key] for key in ("wall_s", "cpu_s", "user_s", "sys_s",
                                                     "ratio", "cpu_per_rotation_ms",
                                                     "simulator_cpu_s")}
                    row["load1"] = round(load, 2)
                    fleet[name].append(row)
                    print("fleet", name, json.dumps(row), flush=True)

    def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
        return {key: round(median([row[key] for row in rows]), 3) for key in rows[0]}

    result = {
        "accounts": args.accounts, "latency_s": args.latency,
        "concurrency": args.concurrency,
        "single": {name: {"median": medians(rows), "runs": rows}
                   for name, rows in single.items()},
        "fleet": {name: {"median": medians(rows), "runs": rows} for name, rows in fleet.items()},
    }
    for part in ("single", "fleet"):
        print(part, {name: result[part][name]["median"] for name in trees}, flush=True)
    save_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
