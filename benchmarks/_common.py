"""Shared plumbing for the benchmarks: the simulator as a child process, fleets, timing.

Everything runs on loopback. Every child process is started by us and stopped by its
own pid (SIGTERM, then SIGKILL after a deadline); every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# BENCH_RESULTS: where results go (run_all.py --baseline puts an older commit's there).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "benchmarks" / "results")
# The load average when this benchmark started (saved next to the one at its end).
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]
# Environment variables that change what a benchmark measures: part of its command line.
COMMAND_ENV = ("BENCH_TMP", "BENCH_ROTATE_ARGS", "BENCH_COMMIT")
PYTHON = sys.executable
ROTATOR = str(Path(sys.executable).parent / "rotator")
ADMIN_ENV = "MOTHERDUCK_ADMIN_TOKEN"

# Child interpreters load bytecode the way an installed package does. With
# PYTHONDONTWRITEBYTECODE set (as on some CI machines) and rotator installed editable,
# every child would compile rotator's sources again, while boto3's wheel came with its
# .pyc files: cold starts would compare compiling with loading. The cache lives in the
# temp dir (never in the checkout); the first run of each child fills it.
PYCACHE = Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir()) / "rotator-bench-pycache"
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # run_all.py (or a person) stopping a benchmark: unwind, so every `with` block stops
    # the children it started (by their pids) instead of leaving them behind.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _stop_on_sigterm)


# Where modules the benchmarks import in-process lived before the tree was reorganised
# into subpackages. When the rotator being measured is that older tree (run_all.py
# --baseline 238727c), the new names are aliased to the old modules, so the same
# benchmark scripts run on both. Only ever applied when rotator/state/ does not exist.
_OLD_MODULE_PATHS = {
    "rotator.state.file": "rotator.checkpoint",
    "rotator.state.lease": "rotator.checkpoint",
    "rotator.state.store": "rotator.checkpoint",
    "rotator.state.dynamodb": "rotator.checkpoint_dynamodb",
    "rotator.engine.workflow": "rotator.workflow",
    "rotator.motherduck.client": "rotator.motherduck",
    "rotator.ops.audit": "rotator.audit",
    "rotator.util.fsutil": "rotator.fsutil",
}


def _alias_old_module_paths() -> None:
    import importlib
    import importlib.util

    # The rotator package's own directory decides: an editable install elsewhere would
    # otherwise serve the new names from another tree, mixing two versions in one process.
    spec = importlib.util.find_spec("rotator")
    if spec is None or spec.origin is None or (Path(spec.origin).parent / "state").is_dir():
        return  # the reorganised tree (or no rotator): nothing to alias
    for new, old in _OLD_MODULE_PATHS.items():
        with contextlib.suppress(ImportError):
            sys.modules.setdefault(new, importlib.import_module(old))


_alias_old_module_paths()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `predicate` every 20 ms until true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM the process we started (by its pid), SIGKILL if it lingers past `timeout`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=timeout)


def kill_pid(pid: int | None) -> None:
    """SIGKILL one process by the pid we learnt when we started it (or its launcher did)."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def proc_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a live process (from /proc; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Simulator:
    """`python -m rotator.simulator --port 0 --quiet` as a child; control API helpers."""

    def __init__(self, workdir: Path, *, latency: float = 0.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.admin_token = "bench-admin-" + secrets.token_hex(16)
        ready = workdir / "simulator.ready.json"
        ready.unlink(missing_ok=True)
        self._log = open(workdir / "simulator.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                PYTHON, "-m", "rotator.simulator", "--port", "0", "--ready-file", str(ready),
                "--admin-token-env", "BENCH_SIM_ADMIN_TOKEN",  # never on argv (`ps`)
                "--latency", str(latency), "--quiet",
            ],
            # The simulator is the fixture, not what is measured: always this checkout's,
            # also when an older commit's rotator is first on PYTHONPATH (run_all.py
            # --baseline), so before and after talk to the same server.
            env={**os.environ, "BENCH_SIM_ADMIN_TOKEN": self.admin_token,
                 "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: self.proc.poll() is None and ready.exists(), timeout=30,
                     what="simulator ready file")
        except TimeoutError:
            self.stop()
            raise
        self.url = json.loads(ready.read_text())["url"]
        self.pid = self.proc.pid
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.http.close()
        stop_process(self.proc)
        self._log.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def seed(self, username: str) -> tuple[str, str]:
        answer = self.control("POST", "seed", {"username": username, "token_name": "initial"})
        return answer["token"], answer["id"]

    def set_latency(self, seconds: float) -> None:
        self.control("POST", "latency", {"seconds": seconds, "jitter": 0})

    def requests(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.control("GET", "requests")["requests"]
        return entries

    def settled_requests(self, route: str, count: int, timeout: float = 10.0) -> list[
            dict[str, Any]]:
        """The request log once it holds `count` entries for `route`.

        The simulator appends an entry after it has sent the response, so a client that
        just got its answer can read the log before its own request is in it. Waits (with
        a deadline) instead; returns what is there if the deadline passes.
        """
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            found[:] = self.requests()
            return sum(1 for r in found if r["route"] == route) >= count

        with contextlib.suppress(TimeoutError):
            wait_for(enough, timeout=timeout, what=f"{count} {route} entries in the request log")
        return found

    def clear_requests(self) -> None:
        self.control("DELETE", "requests")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)


@dataclass
class Fleet:
    """N seeded, adopted service accounts with a file backend each, and their config."""

    workdir: Path
    config_path: Path
    names: list[str]
    env: dict[str, str] = field(default_factory=dict)


def write_config(
    workdir: Path, url: str, names: Sequence[str], *, extra_state: str = "",
    state_path: str = "state", defaults: str = "",
) -> Path:
    parts = [
        f'[motherduck]\napi_url = "{url}"\nadmin_token_env = "{ADMIN_ENV}"\n',
        f'[state]\npath = "{state_path}"\n{extra_state}',
        f'[defaults]\nchecks = ["readback"]\nrevoke_grace = "0s"\n{defaults}',
    ]
    for name in names:
        parts.append(
            f'[[accounts]]\nusername = "{name}"\n'
            f'  [[accounts.backends]]\n  type = "file"\n  path = "secrets/{name}.json"\n'
        )
    path = workdir / "rotator.toml"
    path.write_text("\n".join(parts))
    return path


def make_fleet(sim: Simulator, workdir: Path, n: int, *, prefix: str = "svc") -> Fleet:
    """Seed `n` accounts, write each one's token file, and adopt each current token.

    Adoption uses `Engine.adopt` (one list_tokens call each) with a non-durable FileStore
    on the same state directory the measured runs use; setup time is not measured.
    """
    from rotator import log as rlog
    from rotator.config import load_config
    from rotator.engine.workflow import Engine
    from rotator.motherduck.client import MotherDuckClient
    from rotator.secret import Secret
    from rotator.state.file import FileStore

    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "secrets").mkdir(parents=True)
    names = [f"{prefix}_{i:05d}" for i in range(n)]
    sim.set_latency(0.0)

    def seed_one(name: str) -> tuple[str, str]:
        secret, token_id = sim.seed(name)
        path = workdir / "secrets" / f"{name}.json"
        path.write_text(json.dumps({"motherduck_token": secret, "token_id": token_id}))
        path.chmod(0o600)
        return name, token_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = dict(pool.map(seed_one, names))
    config_path = write_config(workdir, sim.url, names)
    config = load_config(config_path)
    rlog.configure("json", level="warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    client = MotherDuckClient(sim.url, Secret(sim.admin_token))
    engine = Engine(config, client, FileStore(config.state_path, durable=False))
    with ThreadPoolExecutor(max_workers=8) as pool:
        for outcome in pool.map(lambda name: engine.adopt(name, ids[name]), names):
            assert outcome.result == "adopted", outcome
    client.close()
    env = {**os.environ, ADMIN_ENV: sim.admin_token, "ROTATOR_CONFIG": str(config_path)}
    return Fleet(workdir, config_path, names, env)


@dataclass
class ChildRun:
    wall: float
    cpu: float
    max_rss_mb: float
    returncode: int
    user: float = 0.0
    sys: float = 0.0
    capped: bool = False
    start_monotonic: float = 0.0  # time.monotonic() just before the command was started


# A tiny measuring parent. Linux's ru_maxrss counts the memory a child inherited at
# fork() (before exec), so a child forked straight from this (large) benchmark process
# would report at least our own RSS. This launcher is small, forks the command, waits
# with wait4 and writes {wall, start_monotonic (when it started the command, on the clock
# every process shares), user, sys, maxrss_kb, rc} to the file named by BENCH_MEASURE_OUT.
MEASURE = """
import json, os, signal, subprocess, sys, time
out = os.environ.pop("BENCH_MEASURE_OUT")
t = time.perf_counter()
t0 = time.monotonic()  # the system-wide clock a child can read too (time.monotonic())
p = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, lambda *a: p.terminate())
while True:
    try:
        _, st, ru = os.wait4(p.pid, 0)
        break
    except InterruptedError:
        continue
w = time.perf_counter() - t
with open(out, "w") as f:
    json.dump({"wall": w, "start_monotonic": t0, "user": ru.ru_utime, "sys": ru.ru_stime,
               "maxrss_kb": ru.ru_maxrss, "rc": os.waitstatus_to_exitcode(st)}, f)
"""


def _child_pid(launcher: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
        return int(text[0])
    return None


def run_child(argv: Sequence[str], *, env: dict[str, str], cwd: Path, stdout: Any,
              stderr: Any, timeout: float, cap: float | None = None,
              sample: Callable[[float, int], None] | None = None,
              sample_every: float = 2.0) -> ChildRun:
    """Run a child to completion; wall clock, CPU (user+sys) and peak RSS from wait4.

    The command runs under a small launcher (see `MEASURE`) so its peak RSS is its own.
    `timeout` raises TimeoutError; `cap` instead stops the child (SIGTERM) and returns
    what it used so far with `capped=True`. `sample(elapsed, pid)` is called every
    `sample_every` seconds while it runs.
    """
    fd, measure_path = tempfile.mkstemp(prefix="rotator-bench-measure-", suffix=".json")
    os.close(fd)
    started = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "-S", "-c", MEASURE, *argv],
                            env={**env, "BENCH_MEASURE_OUT": measure_path}, cwd=cwd,
                            stdout=stdout, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + timeout
    cap_at = None if cap is None else time.monotonic() + cap
    next_sample = time.monotonic() + sample_every
    capped = False
    command_pid: int | None = None  # the measured command, the launcher's only child
    try:
        while proc.poll() is None:
            now = time.monotonic()
            command_pid = command_pid or _child_pid(proc.pid)
            if cap_at is not None and now > cap_at and not capped:
                capped = True
                proc.send_signal(signal.SIGTERM)  # the launcher passes it on to the command
            if now > deadline:
                stop_process(proc)  # SIGTERM reaches the command through the launcher
                if command_pid is not None and Path(f"/proc/{command_pid}").exists():
                    kill_pid(command_pid)
                raise TimeoutError(f"{argv[:3]} ran longer than {timeout}s")
            if sample is not None and now >= next_sample and command_pid is not None:
                next_sample = now + sample_every
                with contextlib.suppress(OSError, ValueError):
                    sample(time.perf_counter() - started, command_pid)
            time.sleep(0.005)
        measured = json.loads(Path(measure_path).read_text())
    finally:
        os.unlink(measure_path)
    return ChildRun(measured["wall"], measured["user"] + measured["sys"],
                    measured["maxrss_kb"] / 1024, measured["rc"], measured["user"],
                    measured["sys"], capped, measured["start_monotonic"])


def count_files(path: Path) -> int:
    """Entries in a directory (0 if it does not exist yet)."""
    try:
        return sum(1 for _ in os.scandir(path))
    except FileNotFoundError:
        return 0


def dir_size_mb(path: Path) -> float:
    """Total size of the files below `path`, in MiB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total / 2**20


def proc_rss_now_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def self_usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    # BENCH_COMMIT names the code measured when it is not this checkout's (a `git archive`
    # of an older commit first on PYTHONPATH: run_all.py --baseline).
    commit = os.environ.get("BENCH_COMMIT") or commit or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "rotator", "backends"],
                           cwd=ROOT, capture_output=True, text=True, check=False).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit + ("+dirty" if dirty.strip() else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "loadavg_start_1_5_15": LOAD_AT_START,
    }


def command_line() -> str:
    """This benchmark's command as a person would type it from the checkout's root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    env = [f"{name}={shlex.quote(os.environ[name])}" for name in COMMAND_ENV
           if os.environ.get(name)]
    if os.environ.get("BENCH_COMMIT"):
        env.insert(0, f"PYTHONPATH=<git archive {os.environ['BENCH_COMMIT']}>")
    return " ".join([*env, ".venv/bin/python", shlex.quote(str(script)),
                     *map(shlex.quote, sys.argv[1:])])


def rotate_extra_args(option: str | None = None) -> list[str]:
    """Extra arguments for `rotator rotate --all`: the option if given, else BENCH_ROTATE_ARGS.

    E.g. `BENCH_ROTATE_ARGS="--processes 2"` measures a rotator that has that option.
    """
    text = option if option is not None else os.environ.get("BENCH_ROTATE_ARGS", "")
    return shlex.split(text)


def save_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {"machine": machine(), "command": command_line(), **data}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


@contextlib.contextmanager
def workdir(name: str, keep: bool = False) -> Iterator[Path]:
    root = os.environ.get("BENCH_TMP") or tempfile.gettempdir()
    base = Path(root) / f"rotator-bench-{os.getpid()}-{name}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    # Earlier runs leave dirty pages and deletions behind; their writeback would land in
    # this run's fsyncs and renames (2x swings between otherwise equal runs). Start clean.
    os.sync()
    try:
        yield base
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
