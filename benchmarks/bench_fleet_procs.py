"""Benchmarks 2 and 4: a fleet rotated by the real CLI, wall time vs the network's critical path.

Seeds N service accounts in the simulator, writes each one's token file, adopts each
current token (setup, not timed), sets the simulator's latency, then times

    rotator rotate --all --force --concurrency C --json

as a child process (wall clock; CPU and peak RSS from wait4). The simulator's request
log gives the requests per rotation; the critical path is
requests_per_rotation x latency x ceil(N / C). The simulator's own CPU is read from /proc
to show whether it kept up. Every repeat rotates the whole fleet again (each account's
previous new token is the next run's old token), so repeats need no re-seeding.

    .venv/bin/python benchmarks/bench_fleet.py --accounts 1000 --latency 0.05 --repeats 3

`--processes 1,2` times each value of `rotate --processes` in turn, and `--script` adds
the hand-written script's logic (benchmarks/hand_script.py: create, durable file write,
revoke, on `--concurrency` threads with one httpx client, as a child process) over the
same number of its own accounts in the same simulator: the variants are interleaved,
each repeat in a rotated order, and compared by median ratios. The script's accounts
are separate because rotating rotator's accounts behind its back would break its state.
The peak RSS of the rotator's whole process tree (parent plus workers) is sampled.

    .venv/bin/python benchmarks/bench_fleet_procs.py --accounts 200 --processes 1,2 --script \
        --repeats 5 --name fleet-procs-200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hand_script
from _common import (
    PYTHON,
    ROTATOR,
    Simulator,
    make_fleet,
    median,
    proc_rss_mb,
    proc_rss_now_mb,
    run_child,
    save_result,
    workdir,
)


def count_files(path: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(path))
    except FileNotFoundError:
        return 0


def state_size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total / 2**20


# The hand-written script's logic over a fleet: a child process, `concurrency` threads.
_SCRIPT_FLEET = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import httpx
sys.path.insert(0, sys.argv[1])
import hand_script
import os
url, ids_path, secrets_dir = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
concurrency = int(sys.argv[5])
admin = os.environ["MOTHERDUCK_ADMIN_TOKEN"]
ids = json.loads(ids_path.read_text())
limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
with httpx.Client(timeout=30.0, limits=limits) as http:
    def one(name):
        return name, hand_script.rotate_once(http, url, admin, name, ids[name],
                                             secrets_dir / f"{name}.json")
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        ids = dict(pool.map(one, list(ids)))
ids_path.write_text(json.dumps(ids))
"""


_SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(6_000_000): x += i\n" \
    "print(time.perf_counter() - t)"


def parallel_capacity() -> float:
    """How many cores two CPU-bound processes actually got just now (2.0 on an idle
    2-core machine; ~1.0 when other work holds one core): the same loop alone, then two
    copies at once. A second worker process can only help as far as this exceeds 1."""
    import subprocess

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


def seed_script_fleet(sim: Simulator, workdir: Path, n: int) -> tuple[Path, list[str]]:
    """`n` accounts for the script (own names), token files, and their current ids."""
    from concurrent.futures import ThreadPoolExecutor

    (workdir / "secrets").mkdir(parents=True, exist_ok=True)
    names = [f"hs_{i:05d}" for i in range(n)]

    def seed_one(name: str) -> tuple[str, str]:
        secret, token_id = sim.seed(name)
        (workdir / "secrets" / f"{name}.json").write_text(
            json.dumps({"motherduck_token": secret, "token_id": token_id}))
        return name, token_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = dict(pool.map(seed_one, names))
    ids_path = workdir / "ids.json"
    ids_path.write_text(json.dumps(ids))
    return ids_path, names


def time_rotator(sim: Simulator, fleet: Any, accounts: int, latency: float, concurrency: int,
                 processes: str | None, timeout: float, cap: float | None) -> dict[str, Any]:
    sim.clear_requests()
    sim_cpu_before = sim.cpu_seconds()
    out_path = fleet.workdir / "rotate.out"
    runs_dir = fleet.workdir / "state" / "runs"
    runs_before = count_files(runs_dir)
    progress: list[tuple[float, int, float]] = []
    tree_peak = [0.0, 0.0]

    def sample(elapsed: float, pid: int) -> None:
        rss, pss = tree_rss_mb(pid)
        tree_peak[0] = max(tree_peak[0], rss)
        tree_peak[1] = max(tree_peak[1], pss)
        progress.append((round(elapsed, 2), count_files(runs_dir) - runs_before, round(rss, 1)))

    argv = [ROTATOR, "--log-format", "json", "rotate", "--all", "--force",
            "--concurrency", str(concurrency), "--json"]
    if processes is not None:
        argv += ["--processes", processes]
    load = [round(x, 2) for x in os.getloadavg()]
    with open(out_path, "w") as out, open(fleet.workdir / "rotate.log", "w") as err:
        child = run_child(argv, env=fleet.env, cwd=fleet.workdir, stdout=out, stderr=err,
                          timeout=timeout, cap=cap, sample=sample,
                          sample_every=2.0 if cap else 0.25)
    sim_cpu = sim.cpu_seconds() - sim_cpu_before
    results = Counter(json.loads(line)["result"] for line in out_path.open())
    # Each completed rotation ends with one revoke (of the previous token).
    expected = results.get("completed", 0)
    requests = sim.settled_requests("revoke_token", expected)
    routes = Counter(r["route"] for r in requests)
    done = routes.get("revoke_token", 0) if child.capped else accounts
    per_rotation = len(requests) / max(done, 1) if not child.capped else 4.0
    critical = per_rotation * latency * math.ceil(accounts / concurrency)
    return {
        "variant": f"rotator-p{processes}" if processes else "rotator",
        "loadavg_before": load,
        "capped": child.capped,
        "rotations_done": done,
        "progress_t_runs_rssmb": progress,
        "wall_s": child.wall,
        "cpu_s": child.cpu,
        "user_s": child.user,
        "sys_s": child.sys,
        "peak_rss_mb": child.max_rss_mb,
        "tree_peak_rss_mb": tree_peak[0] or None,  # sampled every 0.25 s: a lower bound
        "tree_peak_pss_mb": tree_peak[1] or None,
        "returncode": child.returncode,
        "results": dict(results),
        "requests": len(requests),
        "requests_per_rotation": per_rotation,
        "routes": dict(routes),
        "critical_path_s": critical,
        "ratio": child.wall / critical if critical else None,
        "simulator_cpu_s": sim_cpu,
        "per_rotation_ms": child.wall / max(done, 1) * 1000,
        "cpu_per_rotation_ms": child.cpu / max(done, 1) * 1000,
    }


def time_script(sim: Simulator, workdir: Path, ids_path: Path, accounts: int, latency: float,
                concurrency: int, timeout: float) -> dict[str, Any]:
    sim_cpu_before = sim.cpu_seconds()
    load = [round(x, 2) for x in os.getloadavg()]
    env = {**os.environ, "MOTHERDUCK_ADMIN_TOKEN": sim.admin_token}
    child = run_child(
        [PYTHON, "-c", _SCRIPT_FLEET, str(Path(hand_script.__file__).parent), sim.url,
         str(ids_path), str(workdir / "secrets"), str(concurrency)],
        env=env, cwd=workdir, stdout=sys.stderr, stderr=sys.stderr, timeout=timeout)
    critical = 2 * latency * math.ceil(accounts / concurrency)
    return {
        "variant": "script",
        "loadavg_before": load,
        "wall_s": child.wall,
        "cpu_s": child.cpu,
        "peak_rss_mb": child.max_rss_mb,
        "returncode": child.returncode,
        "critical_path_s": critical,
        "ratio": child.wall / critical if critical else None,
        "simulator_cpu_s": sim.cpu_seconds() - sim_cpu_before,
        "cpu_per_rotation_ms": child.cpu / max(accounts, 1) * 1000,
    }


_KEYS = ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mb", "tree_peak_rss_mb",
         "tree_peak_pss_mb", "critical_path_s", "ratio", "simulator_cpu_s", "per_rotation_ms",
         "cpu_per_rotation_ms", "requests_per_rotation")


def run_fleet(accounts: int, latency: float, concurrency: int, repeats: int,
              timeout: float, cap: float | None = None, processes: list[str] | None = None,
              script: bool = False) -> dict[str, Any]:
    """`cap` seconds: stop the CLI there and report how far it got (progress samples).

    `processes`: the `--processes` values to compare (None: the option is not passed).
    """
    variants: list[str | None] = list(processes) if processes else [None]
    capacity_start = parallel_capacity() if processes else None
    with workdir(f"fleet-{accounts}") as base, Simulator(base / "sim") as sim:
        started = time.perf_counter()
        fleet = make_fleet(sim, base / "fleet", accounts)
        ids_path = None
        if script:
            ids_path, _ = seed_script_fleet(sim, base / "script", accounts)
        setup_s = time.perf_counter() - started
        sim.set_latency(latency)
        labels: list[str] = [f"p{v}" if v else "rotator" for v in variants]
        if script:
            labels.append("script")
        runs: list[dict[str, Any]] = []
        failed = False
        for repeat in range(repeats):
            shift = repeat % len(labels)
            for label in labels[shift:] + labels[:shift]:
                if label == "script":
                    assert ids_path is not None
                    run = time_script(sim, base / "script", ids_path, accounts, latency,
                                      concurrency, timeout)
                else:
                    procs = variants[labels.index(label)]
                    run = time_rotator(sim, fleet, accounts, latency, concurrency, procs,
                                       timeout, cap)
                run["repeat"] = repeat
                runs.append(run)
                print(json.dumps({k: v for k, v in run.items()
                                  if k not in ("progress_t_runs_rssmb",)}), flush=True)
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
            "accounts": accounts,
            "latency_s": latency,
            "concurrency": concurrency,
            "repeats": repeats,
            "variants": list(by_variant),
            "setup_s": setup_s,
            "state_dir_mb": state_size_mb(fleet.workdir / "state"),
            "simulator_peak_rss_mb": proc_rss_mb(sim.pid),
            "median": first,
            "median_by_variant": by_variant,
            "ratios_vs_script": ratios,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "parallel_capacity_start_end": [capacity_start,
                                            parallel_capacity() if processes else None],
            "runs": runs,
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--cap", type=float, default=None,
                        help="stop the CLI after this many seconds and report progress")
    parser.add_argument("--name", default=None, help="results file name (default fleet-N)")
    parser.add_argument("--processes", default=None,
                        help="comma-separated `rotate --processes` values to interleave")
    parser.add_argument("--script", action="store_true",
                        help="also time hand_script.py's logic over as many accounts")
    args = parser.parse_args(argv)
    processes = args.processes.split(",") if args.processes else None
    result = run_fleet(args.accounts, args.latency, args.concurrency, args.repeats, args.timeout,
                       args.cap, processes, args.script)
    save_result(args.name or f"fleet-{args.accounts}", result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return result


if __name__ == "__main__":
    main()
