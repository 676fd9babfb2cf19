"""Benchmark 4: wall time, CPU and memory from 10 to 10,000 accounts (CLI, --concurrency 32).

Zero simulator latency, so the figures are rotator's own cost per rotation (with 50 ms
the 10,000-account critical path alone would be 4 x 0.05 x 313 = 63 s, and any
super-linear term would hide behind it less well). Each size is a fresh simulator and a
fresh state directory; sizes up to 100 are repeated (--repeats), larger ones run once.
Sizes above 1,000 are sampled every 2 s (rotations finished, RSS) for the progress plot,
and stopped after --cap seconds (default 1200) if they get that far: a stopped point is
reported as "rotations done in that time" and marked capped.

    .venv/bin/python benchmarks/bench_scaling.py [--sizes 10,100,1000,10000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, save_result
from bench_fleet import run_fleet


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=2400)
    parser.add_argument("--cap", type=float, default=1200.0)
    parser.add_argument("--merge", action="store_true",
                        help="replace these sizes in an existing results/scaling.json")
    args = parser.parse_args(argv)
    points = []
    for size in (int(s) for s in args.sizes.split(",")):
        repeats = args.repeats if size <= 100 else 1
        cap = args.cap if size > 1000 else None
        point = run_fleet(size, args.latency, args.concurrency, repeats, args.timeout, cap)
        points.append(point)
        print(json.dumps({k: v for k, v in point.items() if k != "runs"}), flush=True)
    if args.merge and (RESULTS / "scaling.json").exists():
        old = json.loads((RESULTS / "scaling.json").read_text())["points"]
        sizes = {p["accounts"] for p in points}
        points = sorted([p for p in old if p["accounts"] not in sizes] + points,
                        key=lambda p: p["accounts"])
    result = {"latency_s": args.latency, "concurrency": args.concurrency, "points": points}
    save_result("scaling", result)
    return result


if __name__ == "__main__":
    main()
