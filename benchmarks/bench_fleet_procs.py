"""Benchmark 2 by `rotate --processes`: bench_fleet.py's fleet, one variant after another.

The fleet, its setup and each timed `rotator rotate --all --force --concurrency C --json`
(wall clock, CPU and peak RSS from wait4, requests per rotation and the critical path
from the simulator's log, the simulator's CPU) are bench_fleet.py's; see its docstring.

`--processes 1,2` times each value of `rotate --processes` in turn, and `--script` adds
the hand-written script's logic (`benchmarks/hand_script.py --fleet`: create, durable
file write, revoke, on `--concurrency` threads with one httpx client, as a child process)
over the same number of its own accounts in the same simulator: the variants are
interleaved, each repeat in a rotated order, and compared by median ratios. The script's
accounts are separate because rotating rotator's accounts behind its back would break
its state. The peak RSS and PSS of the rotator's whole process tree (parent plus
workers) are sampled every 0.25 s, and how many cores two CPU-bound processes get
(parallel capacity) is probed before and after, when --processes is given.

    .venv/bin/python benchmarks/bench_fleet_procs.py --accounts 200 --processes 1,2 --script \
        --repeats 5 --name fleet-procs-200
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fleet
from _common import ADMIN_ENV, PYTHON, Fleet, Simulator, median, proc_rss_now_mb
from bench_fleet import fleet_header, fleet_parser, fleet_setup, print_run, save_and_print

_SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(6_000_000): x += i\n" \
    "print(time.perf_counter() - t)"


def parallel_capacity() -> float:
    """How many cores two CPU-bound processes actually got just now (2.0 on an idle
    2-core machine; ~1.0 when other work holds one core): the same loop alone, then two
    copies at once. A second worker process can only help as far as this exceeds 1."""
    def spin(n: int) -> float:
        procs = [subprocess.Popen([PYTHON, "-S", "-c", _SPIN], stdout=subprocess.PIPE,
                                  text=True) for _ in range(n)]
        return max(float(p.communicate()[0]) for p in procs)

    alone = spin(1)
    together = spin(2)
    return round(2 * alone / together, 2) if together > 0 else float("nan")


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (a forked worker's, say) split among sharers."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of `pid` and its children (the fleet's workers), summed."""
    pids = [pid]
    with contextlib.suppress(OSError, ValueError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    rss = pss = 0.0
    for one in pids:
        with contextlib.suppress(OSError, ValueError):
            rss += proc_rss_now_mb(one)
            pss += _pss_mb(one)
    return rss, pss


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def time_rotator(sim: Simulator, fleet: Fleet, accounts: int, latency: float, concurrency: int,
                 processes: str | None, timeout: float, cap: float | None) -> dict[str, Any]:
    """bench_fleet's timed run with `--processes` (if not None), plus the process tree's
    peak RSS and PSS."""
    tree_peak = [0.0, 0.0]

    def tree_rss_now(pid: int) -> float:
        rss, pss = tree_rss_mb(pid)
        tree_peak[0] = max(tree_peak[0], rss)
        tree_peak[1] = max(tree_peak[1], pss)
        return rss

    load = _load()
    run = bench_fleet.time_rotator(
        sim, fleet, accounts, latency, concurrency,
        ["--processes", processes] if processes is not None else [], timeout, cap,
        sample_every=2.0 if cap else 0.25, rss_now=tree_rss_now, sync=False)
    return {
        "variant": f"rotator-p{processes}" if processes else "rotator",
        "loadavg_before": load,
        **run,
        "tree_peak_rss_mb": tree_peak[0] or None,  # sampled every 0.25 s: a lower bound
        "tree_peak_pss_mb": tree_peak[1] or None,
    }


def time_script(sim: Simulator, script_dir: Path, accounts: int, latency: float,
                concurrency: int, timeout: float) -> dict[str, Any]:
    """bench_fleet's timed hand_script.py --fleet run, with its critical path (create and
    revoke: two requests per rotation) and the simulator's CPU."""
    sim_cpu_before = sim.cpu_seconds()
    load = _load()
    env = {**os.environ, ADMIN_ENV: sim.admin_token}
    run = bench_fleet.run_script_fleet(sim, script_dir, concurrency, env, timeout, sync=False)
    critical = bench_fleet.critical_path(2, latency, accounts, concurrency)
    return {
        "variant": "script",
        "loadavg_before": load,
        **{key: run[key] for key in ("wall_s", "cpu_s", "peak_rss_mb", "returncode")},
        "critical_path_s": critical,
        "ratio": run["wall_s"] / critical if critical else None,
        "simulator_cpu_s": sim.cpu_seconds() - sim_cpu_before,
        "cpu_per_rotation_ms": run["cpu_s"] / max(accounts, 1) * 1000,
    }


_KEYS = (*bench_fleet.MEDIAN_KEYS, "tree_peak_rss_mb", "tree_peak_pss_mb")


def run_fleet(accounts: int, latency: float, concurrency: int, repeats: int,
              timeout: float, cap: float | None = None, processes: list[str] | None = None,
              script: bool = False) -> dict[str, Any]:
    """`cap` seconds: stop the CLI there and report how far it got (progress samples).

    `processes`: the `--processes` values to compare (None: the option is not passed).
    """
    variants: list[str | None] = list(processes) if processes else [None]
    capacity_start = parallel_capacity() if processes else None
    with fleet_setup(accounts, latency, script=script) as setup:
        labels: list[str] = [f"p{v}" if v else "rotator" for v in variants]
        if script:
            labels.append("script")
        runs: list[dict[str, Any]] = []
        failed = False
        for repeat in range(repeats):
            shift = repeat % len(labels)
            for label in labels[shift:] + labels[:shift]:
                if label == "script":
                    assert setup.script_dir is not None
                    run = time_script(setup.sim, setup.script_dir, accounts, latency,
                                      concurrency, timeout)
                else:
                    procs = variants[labels.index(label)]
                    run = time_rotator(setup.sim, setup.fleet, accounts, latency, concurrency,
                                       procs, timeout, cap)
                run["repeat"] = repeat
                runs.append(run)
                print_run(run)
                failed = failed or run["returncode"] != 0
            if failed:
                break
        by_variant = {}
        for variant in dict.fromkeys(r["variant"] for r in runs):
            mine = [r for r in runs if r["variant"] == variant]
            by_variant[variant] = {
                key: median([r[key] for r in mine if r.get(key) is not None])
                for key in _KEYS if any(r.get(key) is not None for r in mine)
            }
        ratios: dict[str, Any] = {}
        if script:
            # Per repeat (same round, adjacent in time), then the median across repeats.
            for variant in by_variant:
                if variant == "script":
                    continue
                per_repeat = []
                for repeat in range(repeats):
                    mine = [r for r in runs if r["variant"] == variant and r["repeat"] == repeat]
                    theirs = [r for r in runs if r["variant"] == "script" and r["repeat"] == repeat]
                    if mine and theirs:
                        per_repeat.append(mine[0]["wall_s"] / theirs[0]["wall_s"])
                ratios[f"{variant}/script"] = {"median": median(per_repeat),
                                               "per_repeat": per_repeat}
        first = next(iter(by_variant.values()))
        return {
            **fleet_header(setup, accounts, latency, concurrency, repeats=repeats,
                           variants=list(by_variant)),
            "median": first,
            "median_by_variant": by_variant,
            "ratios_vs_script": ratios,
            "loadavg_end": _load(),
            "parallel_capacity_start_end": [capacity_start,
                                            parallel_capacity() if processes else None],
            "runs": runs,
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = fleet_parser(__doc__.splitlines()[0])
    parser.add_argument("--processes", default=None,
                        help="comma-separated `rotate --processes` values to interleave")
    parser.add_argument("--script", action="store_true",
                        help="also time hand_script.py's logic over as many accounts")
    args = parser.parse_args(argv)
    processes = args.processes.split(",") if args.processes else None
    result = run_fleet(args.accounts, args.latency, args.concurrency, args.repeats, args.timeout,
                       args.cap, processes, args.script)
    save_and_print(args.name or f"fleet-{args.accounts}", result)
    return result


if __name__ == "__main__":
    main()
