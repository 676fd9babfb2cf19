"""Benchmark 3: Lambda cold start, in fresh interpreters, vs boto3's own cold start.

    handler   python -c: import rotator.aws_lambda, handle one scheduled event with
              nothing due (3 accounts adopted minutes ago, rotate_after 30d), DynamoDB
              state store on a local moto server (fake credentials)
    baseline  python -c: import boto3, create one Secrets Manager client

Runs alternate (handler, baseline, handler, ...) so noise hits both alike; medians of
--runs. `python -X importtime -c "import rotator.aws_lambda"` gives the import breakdown.
Two walls per run: the whole process (`wall_s`), and from its start to the moment the
event was handled or the client made (`to_done_s`: interpreter shutdown excluded, which
Lambda never pays; the child prints `time.monotonic()` then, the launcher read the same
clock just before starting it).

    .venv/bin/python benchmarks/bench_lambda.py [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    ROOT,
    Simulator,
    free_port,
    median,
    run_child,
    save_result,
    stop_process,
    wait_for,
    workdir,
    write_config,
)

HANDLER = """
import json, time
t = time.perf_counter()
import rotator.aws_lambda as m
imported = time.perf_counter()
out = m.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
done = time.perf_counter()
assert out["failed"] == 0 and all(r["result"] == "not_due" for r in out["results"]), out
print(json.dumps({"import_s": imported - t, "handle_s": done - imported,
                  "done_monotonic": time.monotonic()}))
"""
PROFILED = """
import cProfile, pstats, sys
prof = cProfile.Profile()
prof.enable()
import rotator.aws_lambda as m
m.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
prof.disable()
stats = pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative")
stats.print_stats(45)
stats.print_stats("_make_api_call|emf_for|motherduck.py.*_call")  # AWS and MotherDuck calls
"""
BASELINE = """
import json, time
t = time.perf_counter()
import boto3
imported = time.perf_counter()
boto3.client("secretsmanager", region_name="us-east-1")
done = time.perf_counter()
print(json.dumps({"import_s": imported - t, "handle_s": done - imported,
                  "done_monotonic": time.monotonic()}))
"""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def importtime_top(env: dict[str, str], cwd: Path, n: int = 12) -> dict[str, Any]:
    """Parse `-X importtime`: total for rotator.aws_lambda and the top cumulative entries."""
    done = subprocess.run([PYTHON, "-X", "importtime", "-c", "import rotator.aws_lambda"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|", 2)
        rows.append((name[1:], int(self_us), int(cumulative_us)))  # keeps nesting indent
    top_level = [r for r in rows if not r[0].startswith(" ")]
    total_us = sum(r[2] for r in top_level)
    lambda_us = next(r[2] for r in rows if r[0].strip() == "rotator.aws_lambda")
    by_cumulative = sorted(((r[0].strip(), r[2]) for r in rows), key=lambda r: -r[1])
    return {
        "rotator.aws_lambda_ms": lambda_us / 1000,
        "all_imports_ms": total_us / 1000,
        "top_cumulative_ms": [(name, us / 1000) for name, us in by_cumulative[:n]],
        "boto_loaded": any(r[0].strip() == "boto3" for r in rows),
        "botocore_loaded": any(r[0].strip() == "botocore" for r in rows),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of one cold handler run (stderr)")
    args = parser.parse_args(argv)

    with workdir("lambda") as base, Simulator(base / "sim") as sim:
        port = free_port()
        moto_log = open(base / "moto.log", "wb")  # noqa: SIM115
        moto = subprocess.Popen(
            [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=moto_log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **AWS_ENV})
        try:
            endpoint = f"http://127.0.0.1:{port}"
            wait_for(lambda: moto.poll() is None and httpx.get(endpoint + "/moto-api/").status_code
                     < 500, timeout=60, what="moto server")
            os.environ.update(AWS_ENV)
            result = run(args, base, sim, endpoint)
        finally:
            stop_process(moto)
            moto_log.close()
    save_result("lambda", result)
    print(json.dumps(result, indent=2))
    return result


def run(args: argparse.Namespace, base: Path, sim: Simulator, endpoint: str) -> dict[str, Any]:
    from rotator import log as rlog
    from rotator.config import load_config
    from rotator.engine.workflow import Engine
    from rotator.motherduck.client import MotherDuckClient
    from rotator.secret import Secret
    from rotator.state.dynamodb import DynamoDBStore, create_table

    rlog.configure("json", level="warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    work = base / "fn"
    (work / "secrets").mkdir(parents=True)
    names = [f"svc_lambda_{i}" for i in range(3)]
    ids = {}
    for name in names:
        secret, ids[name] = sim.seed(name)
        (work / "secrets" / f"{name}.json").write_text(
            json.dumps({"motherduck_token": secret, "token_id": ids[name]}))
    table = "rotator-bench"
    state = (f'store = "dynamodb"\ntable = "{table}"\nregion = "us-east-1"\n'
             f'endpoint_url = "{endpoint}"\n')
    config_path = write_config(work, sim.url, names, extra_state=state,
                               defaults='rotate_after = "30d"\n')
    create_table(table, region="us-east-1", endpoint_url=endpoint)
    config = load_config(config_path)
    store = DynamoDBStore(table, region="us-east-1", endpoint_url=endpoint)
    with MotherDuckClient(sim.url, Secret(sim.admin_token)) as client:
        engine = Engine(config, client, store)
        for name in names:
            assert engine.adopt(name, ids[name]).result == "adopted"
    env = {**os.environ, **AWS_ENV, "ROTATOR_CONFIG": str(config_path),
           "MOTHERDUCK_ADMIN_TOKEN": sim.admin_token, "LAMBDA_TASK_ROOT": str(work)}
    sim.clear_requests()
    handler_runs: list[dict[str, float]] = []
    baseline_runs: list[dict[str, float]] = []
    out_path = work / "child.out"
    for code in (HANDLER, BASELINE):  # warm-up: fills the bytecode cache (see _common)
        with open(out_path, "w") as out:
            run_child([PYTHON, "-c", code], env=env, cwd=ROOT, stdout=out,
                      stderr=subprocess.DEVNULL, timeout=120)
    sim.clear_requests()
    for _ in range(args.runs):
        for code, runs in ((HANDLER, handler_runs), (BASELINE, baseline_runs)):
            with open(out_path, "w") as out:
                child = run_child([PYTHON, "-c", code], env=env, cwd=ROOT, stdout=out,
                                  stderr=subprocess.DEVNULL, timeout=120)
            assert child.returncode == 0, (code, child, out_path.read_text())
            # The handler may print EMF metrics lines to stdout first; ours is the last.
            inner = json.loads(out_path.read_text().strip().splitlines()[-1])
            to_done = inner.pop("done_monotonic") - child.start_monotonic
            runs.append({"wall_s": child.wall, "to_done_s": to_done, "cpu_s": child.cpu,
                         "peak_rss_mb": child.max_rss_mb, **inner})
    api_calls = len(sim.requests())
    if args.profile:
        subprocess.run([PYTHON, "-c", PROFILED], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                       timeout=120, check=True)

    def med(runs: list[dict[str, float]]) -> dict[str, float]:
        return {key: median([r[key] for r in runs]) for key in runs[0]}

    handler, baseline = med(handler_runs), med(baseline_runs)
    return {
        "runs": args.runs,
        "accounts": len(names),
        "handler": handler,
        "baseline_boto3_client": baseline,
        "ratio_wall": handler["wall_s"] / baseline["wall_s"],
        # Interpreter shutdown excluded (Lambda never pays it).
        "ratio_to_done": handler["to_done_s"] / baseline["to_done_s"],
        "motherduck_requests_during_handler_runs": api_calls,
        "importtime": importtime_top(env, ROOT),
    }


if __name__ == "__main__":
    main()
