"""Run every benchmark in sequence, then draw the plots; results in benchmarks/results/.

    .venv/bin/python benchmarks/run_all.py            # the figures in docs/performance.md
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run: small sizes, few rounds

Each benchmark runs in its own interpreter, one after the other (never in parallel: the
machine's cores are part of what is measured). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = [
    ["bench_single.py", "--rounds", "40", "--cli-runs", "7"],
    ["bench_fleet.py", "--accounts", "1000", "--latency", "0.05", "--concurrency", "32",
     "--repeats", "3"],
    ["bench_fleet.py", "--accounts", "200", "--processes", "1,2", "--script", "--repeats", "5",
     "--name", "fleet-procs-200"],
    ["bench_fleet.py", "--accounts", "1000", "--processes", "1,2", "--script", "--repeats", "3",
     "--name", "fleet-procs-1000"],
    ["bench_lambda.py", "--runs", "9"],
    ["bench_checkpoint.py", "--saves", "400"],
    ["bench_scaling.py", "--sizes", "10,100,1000,10000"],
    ["bench_syscalls.py", "--accounts", "20"],
]
QUICK = [
    ["bench_single.py", "--rounds", "5", "--cli-runs", "2"],
    ["bench_fleet.py", "--accounts", "64", "--latency", "0.05", "--repeats", "1",
     "--name", "fleet-quick"],
    ["bench_fleet.py", "--accounts", "64", "--processes", "1,2", "--script", "--repeats", "1",
     "--name", "fleet-procs-quick"],
    ["bench_lambda.py", "--runs", "2"],
    ["bench_checkpoint.py", "--saves", "40"],
]


DEADLINE_S = 3600  # per benchmark script


def run_one(argv: list[str], deadline: float) -> int:
    """Run one benchmark; past the deadline SIGTERM it (it stops its own children), then
    SIGKILL it if it has not exited a minute later. Both by its pid."""
    proc = subprocess.Popen(argv)
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
    args = parser.parse_args()
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
    return status


if __name__ == "__main__":
    sys.exit(main())
