"""fsyncs and system calls per rotation (file state store + file backend), by strace.

Counts do not depend on the machine's load, so this is the one benchmark whose figures
can be compared across runs on a shared machine. Against the simulator (0 latency):

    single   `rotator rotate U --force` as one process, everything it does (start-up too)
    fleet    `rotator rotate --all --force --concurrency C` over N accounts, minus the same
             command with nothing due (start-up, config, reading the state): per rotation

`strace -f -c` counts every call of every thread; `strace -f -y -e trace=fsync,fdatasync`
names the file each fsync flushed. `--baseline DIR` runs the same with `PYTHONPATH=DIR`
(an older checkout, e.g. `git archive <commit> | tar -x -C /tmp/rotator-before`) for
before/after. The measured commands run with `PYTHONPATH` set to each checkout; this
script itself (which seeds the accounts) imports rotator from its own checkout, not from
whatever the virtualenv's editable install points at.

    .venv/bin/python benchmarks/bench_syscalls.py [--accounts 20] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's rotator

from _common import ROOT, ROTATOR, Simulator, make_fleet, save_result, workdir

STRACE = shutil.which("strace")
FILE_CALLS = ("openat", "stat", "newfstatat", "fstat", "statx", "lstat", "rename", "renameat2",
              "chmod", "fchmod", "unlink", "mkdir", "write", "pwrite64", "ftruncate", "read",
              "close", "flock", "getdents64")


def strace_counts(argv: list[str], env: dict[str, str], cwd: Path) -> Counter[str]:
    """Calls per system call name over the whole process tree (`strace -f -c`)."""
    assert STRACE is not None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run([STRACE, "-f", "-c", "-o", out.name, *argv], env=env, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       timeout=600)
        counts: Counter[str] = Counter()
        for line in out.read().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[3].isdigit() and not line.startswith("100.00"):
                counts[parts[-1]] += int(parts[3])
        return counts


def fsync_targets(argv: list[str], env: dict[str, str], cwd: Path) -> Counter[str]:
    """fsync/fdatasync calls by what they flushed (temp-file names folded together)."""
    assert STRACE is not None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run([STRACE, "-f", "-y", "-o", out.name, "-e", "trace=fsync,fdatasync",
                        *argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=600)
        found: Counter[str] = Counter()
        for match in re.finditer(r"(fsync|fdatasync)\(\d+<([^>]*)>", out.read()):
            target = match.group(2).replace(str(cwd) + "/", "")
            target = re.sub(r"/\.([^/]*?)\.[^./]+\.tmp$", r"/\1 (temp)", target)
            target = re.sub(r"[0-9a-f-]{36}", "<id>", target)
            found[f"{match.group(1)} {target}"] += 1
        return found


def measure(label: str, pythonpath: str, accounts: int, concurrency: int) -> dict[str, Any]:
    with workdir(f"syscalls-{label}") as base, Simulator(base / "sim") as sim:
        fleet = make_fleet(sim, base / "fleet", accounts)
        env = {**fleet.env, "PYTHONPATH": pythonpath}
        one = fleet.names[0]
        single = [ROTATOR, "--log-format", "json", "rotate", one, "--force", "--json"]
        subprocess.run(single, env=env, cwd=fleet.workdir, check=True, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm caches
        single_calls = strace_counts(single, env, fleet.workdir)
        single_fsyncs = fsync_targets(single, env, fleet.workdir)
        every = [ROTATOR, "--log-format", "json", "rotate", "--all", "--json"]
        noop = strace_counts(every, env, fleet.workdir)  # nothing due: start-up and reads
        forced = [*every, "--force", "--concurrency", str(concurrency)]
        fleet_calls = strace_counts(forced, env, fleet.workdir)
        per_rotation = {name: round((fleet_calls[name] - noop[name]) / accounts, 1)
                        for name in sorted(set(fleet_calls) | set(noop))}
        fsyncs = per_rotation.get("fsync", 0) + per_rotation.get("fdatasync", 0)
        return {
            "pythonpath": pythonpath,
            "single": {
                "syscalls": sum(single_calls.values()),
                "fsync+fdatasync": single_calls["fsync"] + single_calls["fdatasync"],
                "fsync_targets": dict(single_fsyncs.most_common()),
                "file_calls": {k: single_calls[k] for k in FILE_CALLS if single_calls[k]},
            },
            "fleet": {
                "accounts": accounts,
                "concurrency": concurrency,
                "syscalls_per_rotation": round(sum(fleet_calls.values()) - sum(noop.values()))
                / accounts,
                "fsyncs_per_rotation": fsyncs,
                "futex_per_rotation": per_rotation.get("futex", 0),
                "file_calls_per_rotation": {k: per_rotation[k] for k in FILE_CALLS
                                            if per_rotation.get(k)},
            },
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline", metavar="DIR", help="an older checkout to compare with")
    parser.add_argument("--name", default="syscalls")
    args = parser.parse_args(argv)
    if STRACE is None:
        print("strace not found; nothing measured", file=sys.stderr)
        return {}
    # The code measured: this checkout, or what run_all.py --baseline put on PYTHONPATH (an
    # older commit, named by BENCH_COMMIT: its figures are that commit's "before").
    label = "before" if os.environ.get("BENCH_COMMIT") else "after"
    checkouts = {label: CODE}
    if args.baseline:
        checkouts = {"before": str(Path(args.baseline).resolve()), **checkouts}
    result = {label: measure(label, path, args.accounts, args.concurrency)
              for label, path in checkouts.items()}
    save_result(args.name, result)
    print(json.dumps(result, indent=2))
    return result


CODE = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or str(ROOT)

if __name__ == "__main__":
    os.environ.pop("PYTHONPATH", None)  # each checkout gets its own, explicitly
    main()
