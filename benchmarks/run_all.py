"""Run every benchmark in sequence, then draw the plots; results in benchmarks/results/.

    .venv/bin/python benchmarks/run_all.py            # the figures in docs/performance.md
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run: small sizes, few rounds
    .venv/bin/python benchmarks/run_all.py --baseline 238727c   # re-measure the "before"

After the benchmarks, `plot.py` draws the PNGs and `report.py` writes issue 16's table
into docs/performance.md (between its markers) from results/ and results/before-238727c/.
`--baseline REF` runs the benchmarks behind that table on a `git archive` of REF (first on
PYTHONPATH, BENCH_COMMIT=REF) into results/before-REF/ instead, then writes the table.

Each benchmark runs in its own interpreter, one after the other (never in parallel: the
machine's cores are part of what is measured). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Issue 16's table (report.py) reads fleet-200, fleet-1000, single, lambda, syscalls and
# retention; BASELINE is what --baseline measures on an older commit.
BASELINE = [
    ["bench_fleet.py", "--accounts", "200", "--latency", "0.05", "--concurrency", "32",
     "--repeats", "5", "--vs-script", "--name", "fleet-200"],
    ["bench_fleet.py", "--accounts", "1000", "--latency", "0.05", "--concurrency", "32",
     "--repeats", "3", "--vs-script"],
    ["bench_single.py", "--rounds", "40", "--cli-runs", "7"],
    ["bench_lambda.py", "--runs", "9"],
    ["bench_syscalls.py", "--accounts", "20"],
    ["bench_retention.py", "--accounts", "100", "--rotations", "10000", "--keep", "30d"],
]
FULL = [
    ["bench_single.py", "--rounds", "40", "--cli-runs", "7"],
    ["bench_fleet.py", "--accounts", "200", "--latency", "0.05", "--concurrency", "32",
     "--repeats", "5", "--vs-script", "--name", "fleet-200"],
    ["bench_fleet.py", "--accounts", "1000", "--latency", "0.05", "--concurrency", "32",
     "--repeats", "3", "--vs-script"],
    ["bench_fleet_procs.py", "--accounts", "200", "--processes", "1,2", "--script",
     "--repeats", "5", "--name", "fleet-procs-200"],
    ["bench_lambda.py", "--runs", "9"],
    ["bench_checkpoint.py", "--saves", "400"],
    ["bench_scaling.py", "--sizes", "10,100,1000,10000"],
    ["bench_syscalls.py", "--accounts", "20"],
    ["bench_retention.py", "--accounts", "100", "--rotations", "10000", "--keep", "30d"],
]
QUICK = [
    ["bench_single.py", "--rounds", "5", "--cli-runs", "2", "--cli-latency", "0.05"],
    ["bench_fleet.py", "--accounts", "64", "--latency", "0.05", "--repeats", "1",
     "--vs-script", "--name", "fleet-quick"],
    ["bench_fleet_procs.py", "--accounts", "64", "--processes", "1,2", "--script",
     "--repeats", "1", "--name", "fleet-procs-quick"],
    ["bench_lambda.py", "--runs", "2"],
    ["bench_checkpoint.py", "--saves", "40"],
    ["bench_retention.py", "--accounts", "10", "--rotations", "300", "--name",
     "retention-quick"],
]


DEADLINE_S = 3600  # per benchmark script


def run_one(argv: list[str], deadline: float, env: dict[str, str] | None = None) -> int:
    """Run one benchmark; past the deadline SIGTERM it (it stops its own children), then
    SIGKILL it if it has not exited a minute later. Both by its pid."""
    proc = subprocess.Popen(argv, env=env)
    try:
        return proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        print(f"!!! {argv[1]} ran past {deadline}s; stopping it", flush=True)
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=60)
        return 124
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=60)
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="run only the benchmark scripts whose name has this")
    parser.add_argument("--baseline", metavar="REF",
                        help="measure issue 16's table on a git archive of REF instead")
    args = parser.parse_args()
    if args.baseline:
        return baseline(args.baseline, args.only)
    status = 0
    for argv in QUICK if args.quick else FULL:
        if args.only and args.only not in argv[0]:
            continue
        started = time.monotonic()
        print(f"==> {' '.join(argv)}", flush=True)
        returncode = run_one([sys.executable, str(HERE / argv[0]), *argv[1:]], DEADLINE_S)
        print(f"<== {argv[0]} exit {returncode} in {time.monotonic() - started:.0f}s",
              flush=True)
        status = status or returncode
    if not args.quick:
        subprocess.run([sys.executable, str(HERE / "plot.py")], check=False, timeout=300)
        report = subprocess.run([sys.executable, str(HERE / "report.py")], check=False,
                                timeout=300)
        status = status or report.returncode
    return status


def baseline(ref: str, only: str | None) -> int:
    """BASELINE on `git archive REF` (first on PYTHONPATH) into results/before-REF/."""
    root = HERE.parent
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=root, check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    code = Path(tempfile.mkdtemp(prefix=f"rotator-before-{commit}-"))
    status = 0
    try:
        archive = subprocess.run(["git", "archive", commit], cwd=root, check=True,
                                 capture_output=True, timeout=300).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True, timeout=300)
        env = {**os.environ, "PYTHONPATH": str(code), "BENCH_COMMIT": commit,
               "BENCH_RESULTS": str(HERE / "results" / f"before-{commit}")}
        for argv in BASELINE:
            if only and only not in argv[0]:
                continue
            started = time.monotonic()
            print(f"==> [{commit}] {' '.join(argv)}", flush=True)
            returncode = run_one([sys.executable, str(HERE / argv[0]), *argv[1:]], DEADLINE_S,
                                 env=env)
            print(f"<== {argv[0]} exit {returncode} in {time.monotonic() - started:.0f}s",
                  flush=True)
            status = status or returncode
    finally:
        shutil.rmtree(code, ignore_errors=True)
    report = subprocess.run([sys.executable, str(HERE / "report.py"), "--before", commit],
                            check=False, timeout=300)
    return status or report.returncode


if __name__ == "__main__":
    sys.exit(main())
