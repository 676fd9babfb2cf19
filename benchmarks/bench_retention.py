"""Size of `state/runs/` after 10,000 rotations, without retention and after `state prune`.

Real rotations first: N accounts (file state store, file backend) are rotated once by the
CLI (`rotator rotate --all --force`, simulator at zero latency), which leaves one finished
run document per account as this rotator writes it. Then the fast path: each account's
document is copied (a new run id, `started_at`/`updated_at` moved back one day per copy,
everything else byte for byte) until the store holds `--rotations` finished runs — as if
every account had been rotated daily. What is measured:

    unpruned   `du` of state/runs (and the whole state directory) holding every run
    pruned     the same after `rotator state prune` with `[state] keep_runs = KEEP` in
               the config (only where the measured rotator has retention)

On a rotator without `state prune` (the "before" of issue 16) only the first is measured.
Sizes, not times, are the figures; the prune's wall time is recorded for reference.

    .venv/bin/python benchmarks/bench_retention.py [--accounts 100] [--rotations 10000] [--keep 30d]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROTATOR, Simulator, make_fleet, run_child, save_result, workdir

STAMP = re.compile(rb'"(started_at|updated_at)":(\s*)"([^"]+)"')


def usage(path: Path) -> dict[str, Any]:
    """Files, bytes (sum of sizes) and `du -sk` (blocks allocated) under `path`."""
    files = 0
    size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(root, name))
    du = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True,
                        timeout=120).stdout.split()[0]
    return {"files": files, "bytes_mb": size / 2**20, "du_mb": int(du) / 1024}


def shifted(template: bytes, old_id: str, new_id: str, days: int) -> bytes:
    """The template run with a new id and its two timestamps moved back `days` days."""

    def back(match: re.Match[bytes]) -> bytes:
        when = datetime.fromisoformat(match.group(3).decode()) - timedelta(days=days)
        return b'"%s":%s"%s"' % (match.group(1), match.group(2), when.isoformat().encode())

    return STAMP.sub(back, template.replace(old_id.encode(), new_id.encode()))


def fill(runs_dir: Path, total: int) -> int:
    """Copy the finished run of each account until `runs_dir` holds `total` runs."""
    templates = []
    for path in sorted(runs_dir.glob("*.json")):
        doc = json.loads(path.read_bytes())
        assert doc["state"] == "completed", (path, doc["state"])
        templates.append((doc["run_id"], path.read_bytes()))
    written = len(templates)
    days = 1
    while written < total:
        for run_id, data in templates:
            if written >= total:
                break
            new_id = str(uuid.uuid4())
            (runs_dir / f"{new_id}.json").write_bytes(shifted(data, run_id, new_id, days))
            written += 1
        days += 1
    return days - 1


def has_prune(env: dict[str, str], cwd: Path) -> bool:
    done = subprocess.run([ROTATOR, "state", "prune", "--help"], env=env, cwd=cwd,
                          capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--rotations", type=int, default=10_000)
    parser.add_argument("--keep", default="30d", help="keep_runs for the prune (default 30d)")
    parser.add_argument("--name", default="retention")
    args = parser.parse_args(argv)

    with workdir("retention") as base, Simulator(base / "sim") as sim:
        fleet = make_fleet(sim, base / "fleet", args.accounts, prefix="svc_ret")
        devnull = open(os.devnull, "w")  # noqa: SIM115
        rotated = run_child([ROTATOR, "--log-format", "json", "rotate", "--all", "--force",
                             "--concurrency", "32", "--json"], env=fleet.env,
                            cwd=fleet.workdir, stdout=devnull, stderr=devnull, timeout=600)
        assert rotated.returncode == 0, rotated
        state = fleet.workdir / "state"
        runs_dir = state / "runs"
        real = len(list(runs_dir.glob("*.json")))
        history_days = fill(runs_dir, args.rotations)
        os.sync()
        unpruned = {"runs": usage(runs_dir), "state": usage(state)}
        per_run_kb = unpruned["runs"]["bytes_mb"] * 1024 / max(unpruned["runs"]["files"], 1)
        pruned = None
        prune_wall = None
        if has_prune(fleet.env, fleet.workdir):
            text = fleet.config_path.read_text()
            keep = args.keep if not args.keep.isdigit() else int(args.keep)
            fleet.config_path.write_text(
                text.replace('[state]\n', f'[state]\nkeep_runs = {json.dumps(keep)}\n', 1))
            out_path = fleet.workdir / "prune.out"
            with open(out_path, "w") as out:
                child = run_child([ROTATOR, "--log-format", "json", "state", "prune", "--json"],
                                  env=fleet.env, cwd=fleet.workdir, stdout=out, stderr=devnull,
                                  timeout=1800)
            assert child.returncode == 0, child
            prune_wall = child.wall
            os.sync()
            pruned = {"runs": usage(runs_dir), "state": usage(state),
                      "removed": sum(1 for _ in out_path.open())}
    result = {
        "accounts": args.accounts,
        "rotations": args.rotations,
        "real_rotations": real,
        "history_days": history_days,
        "keep_runs": args.keep,
        "run_document_kb": per_run_kb,
        "unpruned": unpruned,
        "pruned": pruned,
        "prune_wall_s": prune_wall,
    }
    save_result(args.name, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
