"""Benchmark 3: Lambda cold start, in fresh interpreters, vs boto3's own cold start.

    handler   python -c: import rotator.aws_lambda, handle one scheduled event with
              nothing due (3 accounts adopted minutes ago, rotate_after 30d), DynamoDB
              state store on a local moto server (fake credentials)
    baseline  python -c: import boto3, create one Secrets Manager client

Rounds are interleaved (handler, baseline; with --before, the other checkout's handler
too, the order rotating each round) so noise hits all alike; medians of --runs. The
headline ratio excludes interpreter shutdown, which Lambda never pays (the function's
process is frozen after it answers, not torn down): each child prints the moment its
work is done (CLOCK_MONOTONIC, shared by every process), and its launcher noted the
moment it spawned it. Wall clock including shutdown is reported as well.
`python -X importtime -c "import rotator.aws_lambda"` gives the import breakdown.

    .venv/bin/python benchmarks/bench_lambda.py [--runs 9] [--profile]
    # before/after in one interleaved run: another checkout, e.g. main's
    git archive main | tar -x -C /tmp/rotator-main
    .venv/bin/python benchmarks/bench_lambda.py --runs 15 --before /tmp/rotator-main
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    MEASURE,
    PYTHON,
    ROOT,
    Simulator,
    free_port,
    median,
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
done_at, cpu = time.monotonic(), time.process_time()
assert out["failed"] == 0 and all(r["result"] == "not_due" for r in out["results"]), out
print(json.dumps({"import_s": imported - t, "handle_s": done - imported, "done_at": done_at,
                  "cpu_to_done_s": cpu, "file": m.__file__}))
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
stats.sort_stats("tottime").print_stats(25)
stats.print_callers("inspect.py.*getsource|tokenize.py.*_tokenize")  # source read at start-up
"""
BASELINE = """
import json, time
t = time.perf_counter()
import boto3
imported = time.perf_counter()
boto3.client("secretsmanager", region_name="us-east-1")
done = time.perf_counter()
done_at, cpu = time.monotonic(), time.process_time()
print(json.dumps({"import_s": imported - t, "handle_s": done - imported, "done_at": done_at,
                  "cpu_to_done_s": cpu}))
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
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout of rotator (e.g. `git archive main`) whose "
                        "handler runs are interleaved with this one's")
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
    # The venv's editable install points at one checkout; each child names its own.
    pythonpath = os.environ.get("PYTHONPATH", "")
    envs = {"handler": {**env, "PYTHONPATH": _path(ROOT, pythonpath)},
            "baseline_boto3_client": env}
    codes = {"handler": HANDLER, "baseline_boto3_client": BASELINE}
    if args.before is not None:
        envs["before_handler"] = {**env, "PYTHONPATH": _path(args.before, pythonpath)}
        codes["before_handler"] = HANDLER
    out_path = work / "child.out"
    for name in codes:  # warm-up: fills the bytecode cache (see _common)
        measure(codes[name], envs[name], out_path, cwd=work)
    sim.clear_requests()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    load_before = os.getloadavg()
    order = list(codes)
    for i in range(args.runs):
        for name in order[i % len(order):] + order[: i % len(order)]:  # rotate the order
            runs[name].append(measure(codes[name], envs[name], out_path, cwd=work))
    load_after = os.getloadavg()
    per_run = len(sim.requests()) / args.runs / (2 if args.before else 1)
    if args.profile:
        subprocess.run([PYTHON, "-c", PROFILED], env=envs["handler"], cwd=work,
                       stdout=subprocess.DEVNULL, timeout=120, check=True)

    def med(rows: list[dict[str, float]]) -> dict[str, float]:
        return {key: median([r[key] for r in rows]) for key in rows[0]}

    base = med(runs["baseline_boto3_client"])
    result: dict[str, Any] = {
        "runs": args.runs,
        "accounts": len(names),
        "loadavg_during": {"before": [round(x, 2) for x in load_before],
                           "after": [round(x, 2) for x in load_after]},
        "baseline_boto3_client": base,
        "motherduck_requests_per_handler_run": per_run,
    }
    for name in codes:
        if name == "baseline_boto3_client":
            continue
        handler = med(runs[name])
        prefix = "" if name == "handler" else "before_"
        # Per round: this handler run against the baseline run of the same round.
        rounds = [h["to_done_s"] / b["to_done_s"]
                  for h, b in zip(runs[name], runs["baseline_boto3_client"], strict=True)]
        result[name] = handler
        result[prefix + "ratio_to_done"] = handler["to_done_s"] / base["to_done_s"]
        result[prefix + "ratio_to_done_rounds_min_max"] = [min(rounds), max(rounds)]
        result[prefix + "ratio_wall"] = handler["wall_s"] / base["wall_s"]
        # CPU time (user + system, from process start to done) moves less than wall
        # clock on a loaded machine; ratio_cpu includes shutdown.
        result[prefix + "ratio_cpu_to_done"] = handler["cpu_to_done_s"] / base["cpu_to_done_s"]
        result[prefix + "ratio_cpu"] = handler["cpu_s"] / base["cpu_s"]
    result["importtime"] = importtime_top(envs["handler"], work)
    return result


def _path(first: Path | str, rest: str) -> str:
    return os.pathsep.join(p for p in (str(first), rest) if p)


def measure(code: str, env: dict[str, str], out_path: Path, *, cwd: Path) -> dict[str, float]:
    """One fresh interpreter running `code`: wall, wall to `done_at`, CPU, peak RSS.

    `cwd` is the function's directory, not a checkout: `python -c` puts the working
    directory first on sys.path, which would shadow the PYTHONPATH naming the checkout.
    """
    fd, measure_path = tempfile.mkstemp(prefix="rotator-bench-launch-", suffix=".json")
    os.close(fd)
    try:
        with open(out_path, "w") as out:
            proc = subprocess.Popen([PYTHON, "-S", "-c", MEASURE, PYTHON, "-c", code],
                                    env={**env, "BENCH_MEASURE_OUT": measure_path}, cwd=cwd,
                                    stdout=out, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this call started
                proc.wait(timeout=10)
                raise
        launched = json.loads(Path(measure_path).read_text())
    finally:
        os.unlink(measure_path)
    assert launched["rc"] == 0, (code, launched, out_path.read_text())
    # The handler prints its EMF metrics lines to stdout first; ours is the last.
    lines = out_path.read_text().strip().splitlines()
    inner = json.loads(lines[-1])
    ran = inner.pop("file", None)  # the handler's module: from the checkout it was meant to be
    assert ran is None or ran.startswith(env["PYTHONPATH"].split(os.pathsep)[0]), ran
    # The launcher notes when it spawned the command, on the clock `done_at` is read on.
    to_done = inner.pop("done_at") - launched["start_monotonic"]
    return {"to_done_s": to_done, "wall_s": launched["wall"],
            "shutdown_s": launched["wall"] - to_done,
            "cpu_s": launched["user"] + launched["sys"],
            "peak_rss_mb": launched["maxrss_kb"] / 1024, "stdout_lines": len(lines), **inner}


if __name__ == "__main__":
    main()
