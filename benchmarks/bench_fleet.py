"""Benchmarks 2 and 4: a fleet rotated by the real CLI, wall time vs the network's critical path.

Seeds N service accounts in the simulator, writes each one's token file, adopts each
current token (setup, not timed), sets the simulator's latency, then times

    rotator rotate --all --force --concurrency C --json

as a child process (wall clock; CPU and peak RSS from wait4). The simulator's request
log gives the requests per rotation; the critical path is
requests_per_rotation x latency x N / C (the issue's words: C requests in flight at most,
so the requests cannot be done sooner), and in whole rounds of C rotations,
requests_per_rotation x latency x ceil(N / C), what a pool of C threads each running
one whole rotation at a time cannot beat (rotator worked that way until its requests,
not its rotations, were counted against C). The simulator's own CPU is read from /proc
to show whether it kept up. Every repeat rotates the whole fleet again (each account's
previous new token is the next run's old token), so repeats need no re-seeding.

`--vs-script` also runs the hand-written script's logic over a fleet of the same size on
the same simulator at the same latency and concurrency (`hand_script.py --fleet`, a
thread pool of C over the token files, as a process), interleaved with rotator's runs
repeat by repeat (the order alternating): the ratio rotator wall / script wall of each
pair, and their median. The script's accounts are their own users (`scr_*`): rotator
refuses to mint while a user has live tokens its state does not know, so the two cannot
share users; the simulator's cost per user does not depend on how many users it has.
With it, `hand_script.py --fleet --like-rotator` (the same script making rotator's five
requests per rotation: three token listings added, still no checkpoints) runs interleaved
too, over the script's accounts. Each script's own ratio wall / critical path
(its requests x latency x ceil(N / C)) is reported beside rotator's: what the
thread-per-rotation shape costs on this machine before any of rotator's own work.

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
import contextlib
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet_timeline
from _common import (
    ADMIN_ENV,
    PYTHON,
    ROTATOR,
    Fleet,
    Simulator,
    count_files,
    dir_size_mb,
    make_fleet,
    median,
    proc_rss_mb,
    proc_rss_now_mb,
    rotate_extra_args,
    run_child,
    save_result,
    workdir,
)

HAND_SCRIPT = str(Path(__file__).resolve().parent / "hand_script.py")

# The medians reported of rotator's runs (the JSON's "median"; report.py reads them).
MEDIAN_KEYS = ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mb", "critical_path_s",
               "critical_path_exact_s", "ratio_exact",
               "ratio", "simulator_cpu_s", "per_rotation_ms", "cpu_per_rotation_ms",
               "requests_per_rotation")


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


def run_script_fleet(sim: Simulator, directory: Path, concurrency: int, env: dict[str, str],
                     timeout: float, *, sync: bool = True,
                     like_rotator: bool = False) -> dict[str, Any]:
    """`hand_script.py --fleet` over `directory` as a child process, timed; "rotated" is
    how many token files it says it rotated (0 if it failed). `like_rotator`: with
    rotator's three token listings per rotation (`--like-rotator`)."""
    out_path = directory.parent / "script.out"
    if sync:
        os.sync()  # the previous run's writeback stays out of this one
    extra = ["--like-rotator"] if like_rotator else []
    with open(out_path, "w") as out, open(directory.parent / "script.log", "w") as err:
        child = run_child([PYTHON, HAND_SCRIPT, "--fleet", str(directory), "--concurrency",
                           str(concurrency), *extra, sim.url], env=env, cwd=directory.parent,
                          stdout=out, stderr=err, timeout=timeout)
    rotated = int(out_path.read_text().strip() or 0) if child.returncode == 0 else 0
    return {"wall_s": child.wall, "cpu_s": child.cpu, "peak_rss_mb": child.max_rss_mb,
            "returncode": child.returncode, "rotated": rotated}


@dataclass
class Setup:
    """A running simulator with rotator's fleet (and the script's, if asked) seeded."""

    base: Path
    sim: Simulator
    fleet: Fleet
    script_dir: Path | None  # the script's token files
    setup_s: float


@contextlib.contextmanager
def fleet_setup(accounts: int, latency: float, *, script: bool) -> Iterator[Setup]:
    """Seed and adopt `accounts` accounts (and as many for the script), untimed, then set
    the simulator's latency; the simulator is stopped and the files removed on exit."""
    with workdir(f"fleet-{accounts}") as base, Simulator(base / "sim") as sim:
        started = time.perf_counter()
        fleet = make_fleet(sim, base / "fleet", accounts)
        script_dir = base / "script" / "secrets" if script else None
        if script_dir is not None:
            make_script_fleet(sim, script_dir, accounts)
        setup_s = time.perf_counter() - started
        sim.set_latency(latency)
        yield Setup(base, sim, fleet, script_dir, setup_s)


def time_rotator(sim: Simulator, fleet: Fleet, accounts: int, latency: float,
                 concurrency: int, extra_args: list[str], timeout: float, cap: float | None,
                 *, sample_every: float, rss_now: Callable[[int], float] = proc_rss_now_mb,
                 sync: bool = True) -> dict[str, Any]:
    """One timed `rotate --all --force` over the fleet: wall, CPU, peak RSS, the requests
    it made and the critical path. `rss_now(pid)` is sampled every `sample_every` seconds
    into the progress samples."""
    sim.clear_requests()
    sim_cpu_before = sim.cpu_seconds()
    out_path = fleet.workdir / "rotate.out"
    runs_dir = fleet.workdir / "state" / "runs"
    runs_before = count_files(runs_dir)
    progress: list[tuple[float, int, float]] = []

    def sample(elapsed: float, pid: int) -> None:
        progress.append((round(elapsed, 2), count_files(runs_dir) - runs_before,
                         round(rss_now(pid), 1)))

    if sync:
        os.sync()  # the previous run's writeback stays out of this one
    launched = time.time()
    with open(out_path, "w") as out, open(fleet.workdir / "rotate.log", "w") as err:
        child = run_child(
            [ROTATOR, "--log-format", "json", "rotate", "--all", "--force",
             "--concurrency", str(concurrency), "--json", *extra_args],
            env=fleet.env, cwd=fleet.workdir, stdout=out, stderr=err, timeout=timeout,
            cap=cap, sample=sample, sample_every=sample_every)
    sim_cpu = sim.cpu_seconds() - sim_cpu_before
    results = Counter(json.loads(line)["result"] for line in out_path.open())
    # Each completed rotation ends with one revoke (of the previous token).
    expected = results.get("completed", 0)
    requests = sim.settled_requests("revoke_token", expected)
    routes = Counter(r["route"] for r in requests)
    done = routes.get("revoke_token", 0) if child.capped else accounts
    per_rotation = len(requests) / max(done, 1) if not child.capped else 4.0
    critical = critical_path(per_rotation, latency, accounts, concurrency)
    exact = exact_critical_path(per_rotation, latency, accounts, concurrency)
    timeline = fleet_timeline.summarize(fleet.workdir / "rotate.log",
                                        [r["ts"] for r in requests], launched, child.wall,
                                        latency=latency, concurrency=concurrency)
    return {
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
        "critical_path_exact_s": exact,
        "ratio_exact": child.wall / exact if exact else None,
        "simulator_cpu_s": sim_cpu,
        "per_rotation_ms": child.wall / max(done, 1) * 1000,
        "cpu_per_rotation_ms": child.cpu / max(done, 1) * 1000,
        "timeline": timeline,
    }


def print_run(run: dict[str, Any]) -> None:
    """One run's line on stdout, without its progress samples."""
    print(json.dumps({k: v for k, v in run.items() if k != "progress_t_runs_rssmb"}),
          flush=True)


def fleet_header(setup: Setup, accounts: int, latency: float, concurrency: int,
                 **more: Any) -> dict[str, Any]:
    """The result's first keys: what was run (`more` after the concurrency), then the
    setup's own figures."""
    return {
        "accounts": accounts,
        "latency_s": latency,
        "concurrency": concurrency,
        **more,
        "setup_s": setup.setup_s,
        "state_dir_mb": dir_size_mb(setup.fleet.workdir / "state"),
        "simulator_peak_rss_mb": proc_rss_mb(setup.sim.pid),
    }


def run_fleet(accounts: int, latency: float, concurrency: int, repeats: int,
              timeout: float, cap: float | None = None, *, vs_script: bool = False,
              extra_args: list[str] | None = None) -> dict[str, Any]:
    """`cap` seconds: stop the CLI there and report how far it got (progress samples)."""
    extra_args = rotate_extra_args() if extra_args is None else extra_args
    with fleet_setup(accounts, latency, script=vs_script) as setup:
        sim = setup.sim
        script_env = {**os.environ, ADMIN_ENV: sim.admin_token}
        runs = []
        script_runs: list[dict[str, Any]] = []
        like_runs: list[dict[str, Any]] = []

        def script_run() -> None:
            assert setup.script_dir is not None
            for like, into in ((False, script_runs), (True, like_runs)):
                run = run_script_fleet(sim, setup.script_dir, concurrency, script_env, timeout,
                                       like_rotator=like)
                assert run["rotated"] == accounts, run
                into.append(run)

        for repeat in range(repeats):
            if vs_script and repeat % 2 == 0:  # scripts first in even repeats, last in odd
                script_run()
            runs.append(time_rotator(sim, setup.fleet, accounts, latency, concurrency,
                                     extra_args, timeout, cap,
                                     sample_every=2.0 if cap else 5.0))
            print_run(runs[-1])
            if runs[-1]["returncode"] != 0:
                break
            if vs_script and repeat % 2 == 1:
                script_run()
        summary = {key: median([r[key] for r in runs if r[key] is not None])
                   for key in MEDIAN_KEYS}
        summary["timeline"] = fleet_timeline.merge([r["timeline"] for r in runs])
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
                # Each script against its own critical path, like rotator's "ratio".
                "script_own": script_own(script_runs, 2, latency, accounts, concurrency),
                "like_rotator_own": script_own(like_runs, 5, latency, accounts, concurrency),
                "like_rotator_runs": like_runs,
            }
        return {
            **fleet_header(setup, accounts, latency, concurrency,
                           rotate_extra_args=extra_args, repeats=len(runs)),
            "median": summary,
            "vs_script": comparison,
            "runs": runs,
        }


def critical_path(requests_per_rotation: float, latency: float, accounts: int,
                  concurrency: int) -> float:
    """In whole rounds: sequential requests per rotation x latency x ceil(N / C)."""
    return requests_per_rotation * latency * math.ceil(accounts / concurrency)


def exact_critical_path(requests_per_rotation: float, latency: float, accounts: int,
                        concurrency: int) -> float:
    """The network's own floor: requests x latency x N / C (C requests in flight at most),
    and never less than one rotation's requests one after the other."""
    rounds = max(accounts / concurrency, 1.0)
    return requests_per_rotation * latency * rounds


def script_own(runs: list[dict[str, Any]], calls: int, latency: float, accounts: int,
               concurrency: int) -> dict[str, float]:
    """A script's median wall against its own critical path, as rotator's "ratio"."""
    critical = critical_path(calls, latency, accounts, concurrency)
    exact = exact_critical_path(calls, latency, accounts, concurrency)
    wall = median([run["wall_s"] for run in runs])
    return {"requests_per_rotation": calls, "wall_s": wall, "critical_path_s": critical,
            "ratio": wall / critical, "critical_path_exact_s": exact,
            "ratio_exact": wall / exact}


def fleet_parser(description: str) -> argparse.ArgumentParser:
    """The options both fleet benchmarks take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--cap", type=float, default=None,
                        help="stop the CLI after this many seconds and report progress")
    parser.add_argument("--name", default=None, help="results file name (default fleet-N)")
    return parser


def save_and_print(name: str, result: dict[str, Any]) -> None:
    save_result(name, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = fleet_parser(__doc__.splitlines()[0])
    parser.add_argument("--vs-script", action="store_true",
                        help="interleave the hand-written script over as many accounts")
    parser.add_argument("--rotate-args", default=None,
                        help="extra arguments for rotate --all (default: $BENCH_ROTATE_ARGS)")
    args = parser.parse_args(argv)
    result = run_fleet(args.accounts, args.latency, args.concurrency, args.repeats, args.timeout,
                       args.cap, vs_script=args.vs_script,
                       extra_args=rotate_extra_args(args.rotate_args))
    save_and_print(args.name or f"fleet-{args.accounts}", result)
    return result


if __name__ == "__main__":
    main()
