"""Benchmarks 2 and 4: a fleet rotated by the real CLI, wall time vs the network's critical path.

Seeds N service accounts in the simulator, writes each one's token file, adopts each
current token (setup, not timed), sets the simulator's latency, then times

    rotator rotate --all --force --concurrency C --json

as a child process (wall clock; CPU and peak RSS from wait4). The simulator's request
log gives the requests per rotation; the critical path is
requests_per_rotation x latency x ceil(N / C). The simulator's own CPU is read from /proc
to show whether it kept up. Every repeat rotates the whole fleet again (each account's
previous new token is the next run's old token), so repeats need no re-seeding.

`--vs-script` also runs the hand-written script's logic over a fleet of the same size on
the same simulator at the same latency and concurrency (`hand_script.py --fleet`, a
thread pool of C over the token files, as a process), interleaved with rotator's runs
repeat by repeat (the order alternating): the ratio rotator wall / script wall of each
pair, and their median. The script's accounts are their own users (`scr_*`): rotator
refuses to mint while a user has live tokens its state does not know, so the two cannot
share users; the simulator's cost per user does not depend on how many users it has.

`--rotate-args "..."` (or the environment variable BENCH_ROTATE_ARGS) adds arguments to
the rotate command, e.g. `--processes 2` on a rotator that has that option. With worker
processes, CPU is the whole tree's (wait4 counts the children rotator waited for), but
peak RSS is that of the largest single process, not their sum; the critical path still
divides by --concurrency.

    .venv/bin/python benchmarks/bench_fleet.py --accounts 1000 --latency 0.05 --repeats 3
    .venv/bin/python benchmarks/bench_fleet.py --accounts 200 --vs-script --name fleet-200
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_ENV,
    PYTHON,
    ROTATOR,
    Simulator,
    make_fleet,
    median,
    proc_rss_mb,
    proc_rss_now_mb,
    rotate_extra_args,
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


HAND_SCRIPT = str(Path(__file__).resolve().parent / "hand_script.py")


def make_script_fleet(sim: Simulator, directory: Path, n: int) -> None:
    """`n` users of the script's own, each with a token file `<username>.json`."""
    directory.mkdir(parents=True)

    def seed_one(i: int) -> None:
        name = f"scr_{i:05d}"
        secret, token_id = sim.seed(name)
        path = directory / f"{name}.json"
        path.write_text(json.dumps({"motherduck_token": secret, "token_id": token_id}))
        path.chmod(0o600)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(seed_one, range(n)))


def run_script_fleet(sim: Simulator, directory: Path, concurrency: int, accounts: int,
                     env: dict[str, str], timeout: float) -> dict[str, Any]:
    out_path = directory.parent / "script.out"
    os.sync()  # the previous run's writeback stays out of this one
    with open(out_path, "w") as out, open(directory.parent / "script.log", "w") as err:
        child = run_child([PYTHON, HAND_SCRIPT, "--fleet", str(directory), "--concurrency",
                           str(concurrency), sim.url], env=env, cwd=directory.parent,
                          stdout=out, stderr=err, timeout=timeout)
    rotated = int(out_path.read_text().strip() or 0) if child.returncode == 0 else 0
    assert rotated == accounts, (child, rotated)
    return {"wall_s": child.wall, "cpu_s": child.cpu, "peak_rss_mb": child.max_rss_mb,
            "returncode": child.returncode, "rotated": rotated}


def run_fleet(accounts: int, latency: float, concurrency: int, repeats: int,
              timeout: float, cap: float | None = None, *, vs_script: bool = False,
              extra_args: list[str] | None = None) -> dict[str, Any]:
    """`cap` seconds: stop the CLI there and report how far it got (progress samples)."""
    extra_args = rotate_extra_args() if extra_args is None else extra_args
    with workdir(f"fleet-{accounts}") as base, Simulator(base / "sim") as sim:
        started = time.perf_counter()
        fleet = make_fleet(sim, base / "fleet", accounts)
        if vs_script:
            make_script_fleet(sim, base / "script" / "secrets", accounts)
        setup_s = time.perf_counter() - started
        sim.set_latency(latency)
        script_env = {**os.environ, ADMIN_ENV: sim.admin_token}
        runs = []
        script_runs: list[dict[str, Any]] = []
        for repeat in range(repeats):
            if vs_script and repeat % 2 == 0:  # script first in even repeats, last in odd
                script_runs.append(run_script_fleet(sim, base / "script" / "secrets",
                                                    concurrency, accounts, script_env, timeout))
            sim.clear_requests()
            sim_cpu_before = sim.cpu_seconds()
            out_path = fleet.workdir / "rotate.out"
            runs_dir = fleet.workdir / "state" / "runs"
            runs_before = count_files(runs_dir)
            progress: list[tuple[float, int, float]] = []

            def sample(elapsed: float, pid: int, progress: Any = progress,
                       runs_before: int = runs_before, runs_dir: Path = runs_dir) -> None:
                progress.append((round(elapsed, 2), count_files(runs_dir) - runs_before,
                                 round(proc_rss_now_mb(pid), 1)))

            os.sync()  # the previous run's writeback stays out of this one
            with open(out_path, "w") as out, open(fleet.workdir / "rotate.log", "w") as err:
                child = run_child(
                    [ROTATOR, "--log-format", "json", "rotate", "--all", "--force",
                     "--concurrency", str(concurrency), "--json", *extra_args],
                    env=fleet.env, cwd=fleet.workdir, stdout=out, stderr=err, timeout=timeout,
                    cap=cap, sample=sample, sample_every=2.0 if cap else 5.0)
            sim_cpu = sim.cpu_seconds() - sim_cpu_before
            results = Counter(json.loads(line)["result"] for line in out_path.open())
            # Each completed rotation ends with one revoke (of the previous token).
            expected = results.get("completed", 0)
            requests = sim.settled_requests("revoke_token", expected)
            routes = Counter(r["route"] for r in requests)
            done = routes.get("revoke_token", 0) if child.capped else accounts
            per_rotation = len(requests) / max(done, 1) if not child.capped else 4.0
            critical = per_rotation * latency * math.ceil(accounts / concurrency)
            runs.append({
                "capped": child.capped,
                "rotations_done": done,
                "progress_t_runs_rssmb": progress,
                "wall_s": child.wall,
                "cpu_s": child.cpu,
                "user_s": child.user,
                "sys_s": child.sys,
                "peak_rss_mb": child.max_rss_mb,
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
            })
            print(json.dumps({k: v for k, v in runs[-1].items()
                              if k != "progress_t_runs_rssmb"}), flush=True)
            if child.returncode != 0:
                break
            if vs_script and repeat % 2 == 1:
                script_runs.append(run_script_fleet(sim, base / "script" / "secrets",
                                                    concurrency, accounts, script_env, timeout))
        summary = {
            key: median([r[key] for r in runs if r[key] is not None])
            for key in ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mb", "critical_path_s",
                        "ratio", "simulator_cpu_s", "per_rotation_ms", "cpu_per_rotation_ms",
                        "requests_per_rotation")
        }
        comparison = None
        if script_runs:
            pairs = [r["wall_s"] / s["wall_s"] for r, s in zip(runs, script_runs, strict=False)]
            comparison = {
                "what": "hand_script.py --fleet over as many accounts of its own, same "
                        "simulator, latency and concurrency, interleaved with rotator's runs",
                "pair_ratios_wall": pairs,
                "ratio_wall": median(pairs),
                "script_median": {key: median([s[key] for s in script_runs])
                                  for key in ("wall_s", "cpu_s", "peak_rss_mb")},
                "ratio_cpu": summary["cpu_s"] / median([s["cpu_s"] for s in script_runs]),
                "script_runs": script_runs,
            }
        return {
            "accounts": accounts,
            "latency_s": latency,
            "concurrency": concurrency,
            "rotate_extra_args": extra_args,
            "repeats": len(runs),
            "setup_s": setup_s,
            "state_dir_mb": state_size_mb(fleet.workdir / "state"),
            "simulator_peak_rss_mb": proc_rss_mb(sim.pid),
            "median": summary,
            "vs_script": comparison,
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
    parser.add_argument("--vs-script", action="store_true",
                        help="interleave the hand-written script over as many accounts")
    parser.add_argument("--rotate-args", default=None,
                        help="extra arguments for rotate --all (default: $BENCH_ROTATE_ARGS)")
    args = parser.parse_args(argv)
    result = run_fleet(args.accounts, args.latency, args.concurrency, args.repeats, args.timeout,
                       args.cap, vs_script=args.vs_script,
                       extra_args=rotate_extra_args(args.rotate_args))
    save_result(args.name or f"fleet-{args.accounts}", result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return result


if __name__ == "__main__":
    main()
