"""`rotate --processes N` as a user runs it: real `rotator` processes, the simulator over HTTP.

The same output as one process (every account once, in configuration order; the same
exit status; JSON log lines whole; progress over the whole fleet), stops that reach every
worker, a worker killed outright reported (never a hang) and resumed on the next pass, no
worker left behind, no secret in any output. Workers are held mid-run by `delay` faults on
simulator routes, never by sleeps in the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rotator.ops.fleet_sizing import usable_cpus
from tests.support.procs import run_with_terminal_stderr, wait_until
from tests.support.rotator_cli import (
    CliSetup,
    adopted_fleet,
    json_lines,
    read_secret,
    scan_for_secrets,
)

RESUMABLE = {"completed", "interrupted", "not_started"}


fleet = adopted_fleet  # `n` adopted accounts, each with a file backend holding its token


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def alive(pid: int) -> bool:
    """Running (a zombie no parent reaped yet counts as gone: it runs nothing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return "zombie" not in state and "(dead)" not in state


def assert_consistent(sim: Any, cli: CliSetup, users: list[str]) -> None:
    """Each account: exactly one live token, the one its secret file holds (I1, I2)."""
    for user in users:
        held = read_secret(cli.secret_file(user))["token_id"]
        assert sim.live_token_ids(user) == {held}, user


def lease_pid(cli: CliSetup, user: str) -> int | None:
    path = cli.state_dir / "leases" / f"{user.lower()}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = doc.get("pid")
    return pid if isinstance(pid, int) and not doc.get("released") else None


def run_state(cli: CliSetup, user: str) -> str | None:
    runs = [r for r in cli.runs() if r["account"].lower() == user.lower()]
    return runs[-1]["state"] if runs else None


class TestSameOutputAsOneProcess:
    def test_every_account_once_in_order_with_whole_log_lines(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """--processes 3 over 7 accounts: 7 outcomes in config order, exit 0, JSON logs whole,
        fleet progress counting all 7, several worker pids holding leases, no secret anywhere."""
        cli, users = fleet(simulator, tmp_path, 7)
        env = cli.env(ROTATOR_PROGRESS_INTERVAL="0.2")
        done = cli.run("rotate", "--all", "--force", "--json", "--processes", "3",
                       "--concurrency", "6", env=env)
        assert done.returncode == 0, done.stderr
        docs = json_lines(done.stdout)
        assert [d["account"] for d in docs] == users
        assert {d["result"] for d in docs} == {"completed"}
        assert len(done.stdout.splitlines()) == 7
        events = [json.loads(line) for line in done.stderr.splitlines()]  # every line whole
        progress = [e for e in events if e.get("event") == "fleet.progress"]
        last = progress[-1]
        assert (last["done"], last["total"], last["failed"]) == (7, 7, 0), progress
        # Disjoint shares: one run per account, no account run twice.
        assert sorted(r["account"] for r in cli.runs()) == sorted(users)
        assert_consistent(simulator, cli, users)
        assert not scan_for_secrets([done.stdout, done.stderr], simulator.all_secrets())

    def test_same_results_and_exit_status_as_one_process(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """MotherDuck refuses one account's create (403); the others complete: the same table
        rows (in order) and the same exit status whether one process or two ran them."""
        seen = []
        for processes in ("1", "2"):
            cli, users = fleet(simulator, tmp_path / f"p{processes}", 4)
            bad = users[1]
            simulator.add_fault(route="create_token", action="error", status=403, username=bad)
            done = cli.run("rotate", "--all", "--force", "--processes", processes)
            rows = [line.split()[:2] for line in done.stdout.splitlines()[1:] if line[:1].strip()]
            assert [r[0] for r in rows] == users, done.stdout
            results = [r[1] for r in rows]
            assert results[1] != "completed" and results[::2] + results[3:] == ["completed"] * 3
            seen.append((done.returncode, results))
            simulator.clear_faults()
            assert_consistent(simulator, cli, users)
        assert seen[0] == seen[1] and seen[0][0] != 0, seen

    def test_usage_errors(self, simulator: Any, tmp_path: Path) -> None:
        """--processes 0 / abc: one line naming the option, exit 2, nothing rotated."""
        cli, users = fleet(simulator, tmp_path, 2)
        before = {u: simulator.live_token_ids(u) for u in users}
        for value in ("0", "abc"):
            done = cli.run("rotate", "--all", "--force", "--processes", value)
            assert done.returncode == 2, done.stderr
            assert "--processes" in done.stderr and done.stdout == ""
        assert {u: simulator.live_token_ids(u) for u in users} == before

    def test_terminal_line_counts_the_whole_fleet(self, simulator: Any, tmp_path: Path) -> None:
        """On a terminal: one progress line for all workers ('4/4 done'), worker logs above it."""
        cli, users = fleet(simulator, tmp_path, 4)
        argv = [a for a in cli.argv("rotate", "--all", "--force", "--processes", "2")
                if a not in ("--log-format", "json")]
        code, stdout, err = run_with_terminal_stderr(argv, env=cli.env(), cwd=cli.root)
        assert code == 0, stdout + err
        assert "4/4 done, 0 failed" in err
        assert "rotation" in err.lower() or "run" in err.lower()  # the workers' log lines
        rows = [line.split()[0] for line in stdout.splitlines()[1:] if line[:1].strip()]
        assert rows == users


class TestPlacement:
    """Processes bound to CPUs (rotator.ops.fleet_sizing.placement), seen from outside: the
    masks of the running processes and threads, read while delayed creates hold them."""

    def _masks_while_held(
        self, simulator: Any, tmp_path: Path, mask: set[int], processes: int,
        env: dict[str, str] | None = None,
    ) -> tuple[list[set[int]], list[set[int]]]:
        """`rotate --all --processes N` under `mask`, with as many creates held as
        rotations run at once (N, and at least 2: one process runs 2 threads):
        (each worker's mask, each of the command's own threads' mask)."""
        in_flight = max(processes, 2)
        cli, users = fleet(simulator, tmp_path, 2 * in_flight)
        simulator.add_fault(route="create_token", action="delay", seconds=2, times=in_flight)
        proc = subprocess.Popen(
            cli.argv("rotate", "--all", "--force", "--json", "--processes", str(processes),
                     "--concurrency", str(in_flight)),
            env={**cli.env(), **(env or {})}, cwd=cli.root, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=lambda: os.sched_setaffinity(0, mask),
        )
        try:
            def all_creating() -> bool:
                return proc.poll() is None and simulator.faults()[0]["fired"] == in_flight

            wait_until(all_creating, timeout=60, what="every create held")
            workers = [set(os.sched_getaffinity(pid)) for pid in sorted(children(proc.pid))]
            tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task")]
            threads = [set(os.sched_getaffinity(tid)) for tid in tids]
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 0, (out, err)
        assert len(workers) == (processes if processes > 1 else 0), workers
        assert_consistent(simulator, cli, users)
        return workers, threads

    @staticmethod
    def _two_cpus() -> set[int]:
        two = set(sorted(os.sched_getaffinity(0))[:2])
        if len(two) < 2 or usable_cpus() < 2:
            pytest.skip("needs two CPUs (affinity and CPU quota)")
        return two

    def test_one_worker_per_cpu_each_bound_to_its_own(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """As many workers as CPUs in the command's mask: each worker runs on one CPU of
        its own, every CPU of the mask has one; the parent keeps the whole mask."""
        two = self._two_cpus()
        workers, parent = self._masks_while_held(simulator, tmp_path, two, 2)
        assert sorted(workers, key=min) == [{cpu} for cpu in sorted(two)]
        assert parent == [two] * len(parent)

    def test_one_process_keeps_its_threads_on_one_cpu(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """A fleet in one process (`--processes 1`): all its threads run on one CPU of the
        command's mask while the pass runs."""
        two = self._two_cpus()
        _, threads = self._masks_while_held(simulator, tmp_path, two, 1)
        assert len(threads) >= 3, threads  # the main thread and the two rotating
        assert len({frozenset(cpus) for cpus in threads}) == 1, threads
        assert len(threads[0]) == 1 and threads[0] <= two, threads

    @pytest.mark.parametrize("off", ["0", "off"])
    def test_rotator_bind_cpus_0_leaves_every_thread_to_the_scheduler(
        self, simulator: Any, tmp_path: Path, off: str
    ) -> None:
        two = self._two_cpus()
        _, threads = self._masks_while_held(
            simulator, tmp_path, two, 1, {"ROTATOR_BIND_CPUS": off}
        )
        assert threads == [two] * len(threads)

    def test_more_workers_than_cpus_are_left_to_the_scheduler(
        self, simulator: Any, tmp_path: Path
    ) -> None:
        """Three workers on two CPUs: none is bound (two would share one pinned core)."""
        two = self._two_cpus()
        workers, parent = self._masks_while_held(simulator, tmp_path, two, 3)
        assert workers == [two, two, two]
        assert parent == [two] * len(parent)


class TestStops:
    @pytest.mark.parametrize(
        ("signum", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGINT, False)]
    )
    def test_stop_reaches_every_worker(
        self, simulator: Any, tmp_path: Path, signum: int, group: bool
    ) -> None:
        """SIGTERM/SIGINT to the parent (or Ctrl-C to the whole group): every worker stops at
        its next step boundary, every account is printed once, exit 3, no worker outlives the
        parent; the next pass finishes everything."""
        cli, users = fleet(simulator, tmp_path, 6)
        simulator.add_fault(route="create_token", action="delay", seconds=2, times=2)
        proc = subprocess.Popen(
            cli.argv("rotate", "--all", "--force", "--json", "--processes", "2",
                     "--concurrency", "2"),
            env=cli.env(), cwd=cli.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        workers: set[int] = set()
        try:
            def both_creating() -> bool:
                workers.update(children(proc.pid))
                return proc.poll() is None and simulator.faults()[0]["fired"] == 2

            wait_until(both_creating, timeout=60, what="both workers in a delayed create")
            workers.update(children(proc.pid))
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 3, (out, err)
        assert len(workers) == 2, workers
        assert not [pid for pid in workers if alive(pid)]
        docs = json_lines(out)
        assert [d["account"] for d in docs] == users
        results = [d["result"] for d in docs]
        assert set(results) <= RESUMABLE, results
        assert "not_started" in results and "completed" not in results[2:], results
        assert "again" not in err  # one notice from the parent, none from the workers
        assert f"stopped by {signal.Signals(signum).name}" in err
        assert all(json.loads(line) for line in err.splitlines() if line.startswith("{"))
        again = cli.run("rotate", "--all", "--json")
        assert again.returncode == 0, again.stderr
        assert_consistent(simulator, cli, users)

    def test_killed_worker_is_reported_and_resumed(self, simulator: Any, tmp_path: Path) -> None:
        """A worker SIGKILLed mid-create: the parent does not hang, reports that worker's
        unfinished accounts as errors (exit 1), the other worker's accounts complete; the
        next pass resumes the killed run and rotates the rest, orphaning no token."""
        cli, users = fleet(simulator, tmp_path, 4)
        # Round-robin: worker 0 has users[0] and users[2], worker 1 the others.
        victim = users[0]
        # 3 s: the delayed create lands within the resume's create_settle (5 s), as it would.
        simulator.add_fault(route="create_token", action="delay", seconds=3, username=victim)
        proc = cli.start("rotate", "--all", "--force", "--json", "--processes", "2",
                         "--concurrency", "2")
        workers: set[int] = set()
        try:
            def creating() -> bool:
                workers.update(children(proc.pid))
                return (
                    proc.poll() is None
                    and simulator.faults()[0]["fired"] == 1
                    and lease_pid(cli, victim) in workers
                )

            wait_until(creating, timeout=60, what="the victim's worker in its create")
            pid = lease_pid(cli, victim)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 1, (out, err)
        assert not [p for p in workers if alive(p)]
        docs = {d["account"]: d for d in json_lines(out)}
        assert list(docs) == users
        assert docs[victim]["result"] == "error"
        assert "SIGKILL" in docs[victim]["message"] and "resumes" in docs[victim]["message"]
        assert docs[users[2]]["result"] == "error" and "not started" in docs[users[2]]["message"]
        assert docs[users[1]]["result"] == docs[users[3]]["result"] == "completed"
        simulator.clear_faults()
        again = cli.run("rotate", "--all", "--force", "--json")
        assert again.returncode == 0, again.stderr
        results = {d["account"]: d["result"] for d in json_lines(again.stdout)}
        assert results[victim] in {"completed", "rolled_back"} and results[users[2]] == "completed"
        assert_consistent(simulator, cli, users)

    def test_workers_stop_when_the_parent_is_killed(self, simulator: Any, tmp_path: Path) -> None:
        """SIGKILL to the parent: each worker gets SIGTERM (PR_SET_PDEATHSIG), stops at its
        next step boundary and exits; no orphan keeps running; the next pass finishes."""
        cli, users = fleet(simulator, tmp_path, 4)
        simulator.add_fault(route="create_token", action="delay", seconds=2, times=2)
        proc = cli.start("rotate", "--all", "--force", "--json", "--processes", "2",
                         "--concurrency", "2")
        workers: set[int] = set()
        try:
            def both_creating() -> bool:
                workers.update(children(proc.pid))
                return proc.poll() is None and simulator.faults()[0]["fired"] == 2

            wait_until(both_creating, timeout=60, what="both workers in a delayed create")
            workers.update(children(proc.pid))
            proc.kill()
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert len(workers) == 2, workers
        wait_until(lambda: not [p for p in workers if alive(p)], timeout=60,
                   what="the workers to stop after their parent died")
        # They stopped, not finished: the second account of each worker never started.
        assert sorted(r["account"].lower() for r in cli.runs()) == sorted(
            u.lower() for u in users[:2]
        )
        again = cli.run("rotate", "--all", "--force", "--json")
        assert again.returncode == 0, again.stderr
        assert_consistent(simulator, cli, users)
