"""Hostile or broken servers: every command ends within a bound, under a memory bound, with
a one-line error, and nothing is lost.

A small proxy in front of the simulator forwards every request (so MotherDuck's state is
real and can be checked from outside) except the one route under test, whose answer it
replaces with something hostile: JSON nested 100,000 deep, an endless chunked body, a
slowloris (one byte every half second, against `timeout = "2s"`), an HTML page with 200,
or JSON missing the fields that matter. For a token-creating POST the simulator really
mints the token first, so the run must find it by name and revoke it.

`rotator` runs as a subprocess; the bound is a deadline on waiting for it, the memory
bound the child's own peak RSS (`wait4`), "one line" means one `rotator: error:` line and no traceback
(or, for a rotation, a result whose message is one line), and "nothing lost" means the
simulator lists only the account's current token and the file still holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator.simulator.server import resolve
from tests.support.rotator_cli import CliSetup, json_lines, read_secret, seed_file
from tests.support.simulator_fixtures import SimulatorHandle, unique_username

BOUND_SECONDS = 90  # a command that runs longer than this failed the test
MEMORY_BOUND_KB = 300 * 1024  # peak RSS of the rotator process
MODES = ("deep_json", "endless", "slowloris", "html", "missing_fields")
HOSTILE_RUN_SECONDS = 60  # a hostile answer gives up on its own after this
COUNTS: dict[str, int] = {}


class HostileProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.modes: dict[str, str] = {}
        self.hits: dict[str, int] = {}
        self.http = httpx.Client(base_url=upstream, timeout=30.0)
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: HostileProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route, _ = resolve(method, self.path.split("?")[0])
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization",)}
        if body:
            headers["Content-Type"] = "application/json"
        upstream = self.server.http.request(method, self.path, content=body, headers=headers)
        mode = self.server.modes.get(route)
        if mode is None:
            self._reply(upstream.status_code, upstream.content, "application/json")
            return
        self.server.hits[route] = self.server.hits.get(route, 0) + 1
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client gave up, as it should
            getattr(self, f"_{mode}")(route)

    def _reply(self, status: int, payload: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _deep_json(self, route: str) -> None:
        self._reply(200, b"[" * 100_000 + b"]" * 100_000, "application/json")

    def _html(self, route: str) -> None:
        self._reply(200, b"<html><body><h1>Down for maintenance</h1></body></html>", "text/html")

    def _missing_fields(self, route: str) -> None:
        body = {
            "list_tokens": {"tokens": [{"name": "no-id", "created_ts": "2026-01-01T00:00:00Z"}]},
            "create_token": {"id": "tok_without_secret", "name": "x"},
            "whoami": {"user": "someone"},
        }.get(route, {})
        self._reply(200, json.dumps(body).encode(), "application/json")

    def _endless(self, route: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b'{"tokens": [' + b'{"id": "t", "name": "n"}, ' * 2600
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        stop = time.monotonic() + HOSTILE_RUN_SECONDS
        while time.monotonic() < stop:
            self.wfile.write(frame)

    def _slowloris(self, route: str) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        stop = time.monotonic() + HOSTILE_RUN_SECONDS
        for byte in head + b" " * 100_000:
            if time.monotonic() > stop:
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.5)


@pytest.fixture
def proxy(simulator: SimulatorHandle) -> Iterator[HostileProxy]:
    server = HostileProxy(simulator.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.http.close()


def setup(simulator: SimulatorHandle, proxy: HostileProxy, tmp: Path, policy: str = "") -> Any:
    user = unique_username("svc_hostile")
    old_secret, old_id = simulator.seed(user)
    cli = CliSetup(tmp, proxy.url, simulator.admin_token, [user], policy=policy, create_settle="1s")
    cli.write()
    text = cli.config_path.read_text().replace("[motherduck]\n", '[motherduck]\ntimeout = "2s"\n')
    cli.config_path.write_text(text)
    seed_file(cli.secret_file(user), old_secret, old_id)
    assert run(cli, "adopt", user, "--token-id", old_id)[0] == 0
    return cli, user, old_secret, old_id


def run(cli: CliSetup, *args: str) -> tuple[int, str, str, int]:
    """(exit status, stdout, stderr, peak RSS in KB) of one rotator command, bounded.

    The child is reaped with `wait4`, so the peak RSS is this process's own, not that of
    some other child of the test process.
    """
    proc = subprocess.Popen(
        cli.argv(*args), env=cli.env(), cwd=cli.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    streams: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda n=n, f=f: streams.__setitem__(n, f.read()), daemon=True)
        for n, f in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + BOUND_SECONDS
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            pytest.fail(f"`rotator {' '.join(args)}` did not end within {BOUND_SECONDS}s")
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(timeout=30)
    return proc.returncode, streams["out"].decode(), streams["err"].decode(), usage.ru_maxrss


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.lstrip().startswith("{")]


def assert_nothing_lost(
    simulator: SimulatorHandle, cli: CliSetup, user: str, old_secret: str, old_id: str
) -> None:
    assert simulator.live_token_ids(user) == {old_id}, "a minted token was left behind"
    assert read_secret(cli.secret_file(user))["motherduck_token"] == old_secret
    assert simulator.whoami(old_secret) == user
    for doc in cli.runs():
        assert doc["state"] in ("rolled_back", "completed"), doc["state"]


@pytest.mark.parametrize("mode", MODES)
def test_tokens_command_against_a_hostile_list(
    simulator: SimulatorHandle, proxy: HostileProxy, tmp_path: Path, mode: str
) -> None:
    """`rotator tokens` ends with one `rotator: error:` line, no traceback, bounded memory."""
    cli, user, old_secret, old_id = setup(simulator, proxy, tmp_path)
    proxy.modes["list_tokens"] = mode
    code, out, err, peak = run(cli, "tokens", user)
    assert code != 0 and out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("rotator: error: "), err[-2000:]
    assert "Traceback" not in err
    assert peak < MEMORY_BOUND_KB, f"peak RSS {peak} KB"
    assert proxy.hits["list_tokens"] >= 1
    assert_nothing_lost(simulator, cli, user, old_secret, old_id)
    COUNTS[f"tokens:{mode}"] = 1


@pytest.mark.parametrize("mode", MODES)
def test_rotate_against_a_hostile_create(
    simulator: SimulatorHandle, proxy: HostileProxy, tmp_path: Path, mode: str
) -> None:
    """A create whose answer is hostile is an unknown outcome: found by name, revoked, and
    the run rolls back after its attempts, exit 1, with a one-line message."""
    cli, user, old_secret, old_id = setup(simulator, proxy, tmp_path)
    proxy.modes["create_token"] = mode
    code, out, err, peak = run(cli, "rotate", user, "--force", "--json")
    [result] = json_lines(out)
    assert code == 1 and result["result"] == "rolled_back", (out, err[-2000:])
    assert "\n" not in result["message"]
    assert "Traceback" not in err
    assert peak < MEMORY_BOUND_KB, f"peak RSS {peak} KB"
    assert proxy.hits["create_token"] >= 1
    assert_nothing_lost(simulator, cli, user, old_secret, old_id)
    COUNTS[f"rotate-create:{mode}"] = 1


@pytest.mark.parametrize("mode", MODES)
def test_rotate_against_a_hostile_list(
    simulator: SimulatorHandle, proxy: HostileProxy, tmp_path: Path, mode: str
) -> None:
    """A hostile token list stops the rotation before anything is minted: one error line."""
    cli, user, old_secret, old_id = setup(simulator, proxy, tmp_path)
    proxy.modes["list_tokens"] = mode
    code, _, err, peak = run(cli, "rotate", user, "--force")
    assert code != 0
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("rotator: error: "), err[-2000:]
    assert "Traceback" not in err
    assert peak < MEMORY_BOUND_KB, f"peak RSS {peak} KB"
    assert_nothing_lost(simulator, cli, user, old_secret, old_id)
    COUNTS[f"rotate-list:{mode}"] = 1


@pytest.mark.parametrize("mode", MODES)
def test_simulator_check_against_a_hostile_whoami(
    simulator: SimulatorHandle, proxy: HostileProxy, tmp_path: Path, mode: str
) -> None:
    """A check whose server answers badly is a failed check: rolled back, never stuck in
    `verifying`, the new token revoked, a one-line failure."""
    check = f'{{type = "simulator", url = "{proxy.url}", timeout = 2}}'
    cli, user, old_secret, old_id = setup(simulator, proxy, tmp_path)
    text = cli.config_path.read_text().replace(
        "[defaults]\n", f'[defaults]\nchecks = ["readback", {check}]\n'
    )
    cli.config_path.write_text(text)
    proxy.modes["whoami"] = mode
    code, out, err, peak = run(cli, "rotate", user, "--force", "--json")
    [result] = json_lines(out)
    assert code == 1 and result["result"] == "rolled_back", (out, err[-2000:])
    assert "simulator check" in result["message"] and "\n" not in result["message"]
    assert "Traceback" not in err
    assert peak < MEMORY_BOUND_KB, f"peak RSS {peak} KB"
    assert proxy.hits["whoami"] >= 1
    assert_nothing_lost(simulator, cli, user, old_secret, old_id)
    COUNTS[f"check:{mode}"] = 1


def test_zz_record_counts(tmp_path: Path) -> None:
    """Writes how many hostile cases ran (for docs/reliability.md)."""
    from tests.support.harness import record_counts, report_dir

    counts = {"kind": "hostile_servers", "cases": len(COUNTS), "passed": sorted(COUNTS)}
    path = record_counts(report_dir(tmp_path), "hostile-servers", counts)
    assert json.loads(path.read_text())["cases"] == len(COUNTS) <= 4 * len(MODES)
