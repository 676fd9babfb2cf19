"""Start-up cost of the `rotator` command: `--help`, `rotate --help`, `status`, config load.

Fresh interpreters, interleaved round by round with `python -c pass` as the floor, medians
per variant. `status` runs over a state directory written here (accounts whose token is
one day old, so nothing is due): it reads the config and the account records, changes
nothing and talks to no server. `config load` is `load_config` alone on
the file benchmarks/bench_lambda.py writes (DynamoDB state, three file-backend accounts):
the process's wall time, and (second table) the import + load time it measures itself,
in-process, plus whether pydantic was imported. `--importtime` also prints the
heaviest top-level imports of each command (`python -X importtime`).

    python benchmarks/bench_startup.py --rounds 15 [--accounts 10] [--importtime]
    python benchmarks/bench_startup.py --baseline /tmp/rotator-before   # before/after

`--baseline DIR` runs the same commands a second time with `PYTHONPATH=DIR` (an older
checkout, e.g. `git archive <commit> | tar -x -C DIR`), interleaved with this checkout's
in every round, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_fleet(root: Path, accounts: int) -> dict[str, str]:
    """A config and a state directory in which no account is due; returns the child env."""
    names = [f"svc_startup_{i:04d}" for i in range(accounts)]
    lines = [
        "[motherduck]",
        'api_url = "http://127.0.0.1:9"',  # never contacted: nothing is due
        "[state]",
        'path = "state"',
        "[defaults]",
        'rotate_after = "30d"',
    ]
    created = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    (root / "state" / "accounts").mkdir(parents=True, mode=0o700)
    for name in names:
        lines += ["[[accounts]]", f'username = "{name}"', "  [[accounts.backends]]"]
        lines += ['  type = "file"', f'  path = "secrets/{name}.json"']
        doc = {
            "schema": 1,
            "account": name,
            "current_token": {"id": f"tok-{name}", "name": "initial", "created_ts": created},
            "runs": [],
            "version": 1,
        }
        (root / "state" / "accounts" / f"{name}.json").write_text(json.dumps(doc))
    (root / "rotator.toml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "ROTATOR_CONFIG": str(root / "rotator.toml")}
    env["MOTHERDUCK_ADMIN_TOKEN"] = "not-used-nothing-is-due"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


LAMBDA_CONFIG = """[motherduck]
api_url = "http://127.0.0.1:9"
admin_token_env = "MOTHERDUCK_ADMIN_TOKEN"
[state]
path = "state"
store = "dynamodb"
table = "rotator-bench"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:9"
[defaults]
checks = ["readback"]
revoke_grace = "0s"
rotate_after = "30d"
""" + "".join(
    f'[[accounts]]\nusername = "svc_lambda_{i}"\n'
    f'  [[accounts.backends]]\n  type = "file"\n  path = "secrets/svc_lambda_{i}.json"\n'
    for i in range(3)
)
# Prints, after the process's own start-up: ms for `import rotator.config` + load_config,
# and whether pydantic got imported. stdout is read by config_load_ms().
CONFIG_LOAD = """
import sys, time
t = time.perf_counter()
from pathlib import Path
from rotator.config import load_config
load_config(Path("lambda.toml"))
print((time.perf_counter() - t) * 1000, "pydantic" in sys.modules)
"""


def variants(python: str, checkouts: dict[str, str]) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, PYTHONPATH) for every command in every checkout."""
    runs = {"python -c pass": ([python, "-c", "pass"], str(ROOT))}
    for label, path in checkouts.items():
        suffix = f" [{label}]" if len(checkouts) > 1 else ""
        runs[f"rotator --help{suffix}"] = ([python, "-m", "rotator.cli", "--help"], path)
        runs[f"rotator rotate --help{suffix}"] = (
            [python, "-m", "rotator.cli", "rotate", "--help"], path
        )
        # `rotate --all` now probes the admin token first (a server is needed): `status`
        # reads the same config and account records and talks to no server.
        runs[f"rotator status (no-op){suffix}"] = ([python, "-m", "rotator.cli", "status"], path)
        runs[f"config load{suffix}"] = ([python, "-c", CONFIG_LOAD], path)
    return runs


INSIDE: dict[str, list[tuple[float, bool]]] = {}  # config load: (ms in-process, pydantic?)


def time_once(argv: list[str], env: dict[str, str], cwd: Path, name: str = "") -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr.decode()[-400:]}")
    if name.startswith("config load"):
        ms, pydantic = done.stdout.decode().split()
        INSIDE.setdefault(name, []).append((float(ms), pydantic == "True"))
    return elapsed


def top_imports(argv: list[str], env: dict[str, str], cwd: Path, count: int = 12) -> list[str]:
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd, capture_output=True, check=False
    )
    rows = []
    for line in done.stderr.decode().splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if cumulative.strip().isdigit() and len(name) - len(name.lstrip()) <= 2:
            rows.append((int(cumulative), name.strip()))
    rows.sort(reverse=True)
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in rows[:count]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--baseline", metavar="DIR", help="an older checkout to compare with")
    args = parser.parse_args()
    checkouts = {"now": str(ROOT)}
    if args.baseline:
        checkouts = {"before": str(Path(args.baseline).resolve()), "after": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="rotator-startup-") as tmp:
        root = Path(tmp)
        base_env = write_fleet(root, args.accounts)
        (root / "lambda.toml").write_text(LAMBDA_CONFIG)
        runs = variants(sys.executable, checkouts)
        envs = {name: {**base_env, "PYTHONPATH": path} for name, (_, path) in runs.items()}
        for name, (argv, _) in runs.items():
            time_once(argv, envs[name], root)  # warm-up: fills the bytecode cache
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(args.rounds):
            order = list(runs.items())
            if i % 2:
                order.reverse()
            for name, (argv, _) in order:
                samples[name].append(time_once(argv, envs[name], root, name))
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'command':41} {'median ms':>10} {'min ms':>8}  ({args.rounds} rounds)")
        for name, values in samples.items():
            print(f"{name:41} {statistics.median(values) * 1000:10.0f} {min(values) * 1000:8.0f}")
        head = "import rotator.config + load_config"
        print(f"\n{head:41} {'median ms':>10} {'min ms':>8}  pydantic")
        for name, pairs in INSIDE.items():
            pairs = pairs[-args.rounds:]  # not the warm-up
            ms = [p[0] for p in pairs]
            print(f"{name:41} {statistics.median(ms):10.1f} {min(ms):8.1f}  {pairs[-1][1]}")
        if args.importtime:
            for name, (argv, _) in runs.items():
                if name.startswith("rotator"):
                    print(f"\nheaviest top-level imports, {name}:")
                    print("\n".join(top_imports(argv, envs[name], root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
