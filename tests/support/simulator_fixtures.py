"""The MotherDuck simulator as a real child process, and a handle to steer it.

`simulator_server` (session) starts one simulator for the whole test run; `simulator`
(function) hands out the same server after `reset()` (faults, latency and the request
log cleared; users and tokens kept, so tests use `unique_username()`).
`start_simulator(tmp_dir, *extra_args)` starts a private one (restarts, CLI flags).
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import ServerProcess

__all__ = [
    "SimulatorHandle",
    "simulator",
    "simulator_server",
    "start_simulator",
    "unique_username",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def unique_username(prefix: str = "svc") -> str:
    """A valid, unused service-account name (tests share one server)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class SimulatorHandle:
    """A running simulator: its URL, admin token, pid and control-API helpers."""

    def __init__(
        self, url: str, admin_token: str, pid: int, process: ServerProcess | None = None
    ) -> None:
        self.url = url
        self.admin_token = admin_token
        self.pid = pid
        self.process = process
        self.client = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self.client.close()

    # -- the REST API as the admin (or any token) -------------------------------------

    def api(
        self, method: str, path: str, *, token: str | None = None, json: Any = None
    ) -> httpx.Response:
        """Call the simulated REST API; `token` defaults to the admin token."""
        bearer = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return self.client.request(method, path, headers=headers, json=json)

    # -- control API ----------------------------------------------------------------

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.request(method, f"/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def seed(
        self,
        username: str,
        token_name: str = "initial",
        admin: bool = False,
        ttl: int | None = None,
        token_type: str | None = None,
    ) -> tuple[str, str]:
        """Create the user if missing plus a token for it; returns (secret, token id)."""
        body: dict[str, Any] = {"username": username, "token_name": token_name, "admin": admin}
        if ttl is not None:
            body["ttl"] = ttl
        if token_type is not None:
            body["token_type"] = token_type
        answer = self._control("POST", "seed", body)
        return answer["token"], answer["id"]

    def state(self) -> dict[str, Any]:
        """Every user and every token ever issued (secrets included)."""
        state: dict[str, Any] = self._control("GET", "state")
        return state

    def tokens(self, username: str, live_only: bool = True) -> list[dict[str, Any]]:
        """The user's tokens as `/_sim/state` shows them (case-insensitive match)."""
        wanted = username.lower()
        return [
            token
            for token in self.state()["tokens"]
            if token["username"].lower() == wanted and (token["live"] or not live_only)
        ]

    def live_token_ids(self, username: str) -> set[str]:
        return {token["id"] for token in self.tokens(username)}

    def all_secrets(self) -> list[str]:
        """Every secret the simulator ever issued (to scan logs and files for leaks)."""
        return [token["secret"] for token in self.state()["tokens"]]

    def whoami(self, token: str) -> str | None:
        """The data-plane user for `token`, or None when the token does not work."""
        response = self.client.get("/_sim/whoami", headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            return None
        user: str = response.json()["current_user"]
        return user

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Install a fault rule (see docs/simulator.md); returns it with its id."""
        added: dict[str, Any] = self._control("POST", "faults", rule)
        return added

    def faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self._control("GET", "faults")["faults"]
        return faults

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def requests(self) -> list[dict[str, Any]]:
        """Recorded API requests: method, path, route, status (None if dropped), ts, fault."""
        entries: list[dict[str, Any]] = self._control("GET", "requests")["requests"]
        return entries

    def clear_requests(self) -> None:
        """Empty the request log; the in-flight peak starts again from what is in flight."""
        self._control("DELETE", "requests")

    def peak_in_flight(self) -> int:
        """The most API requests served at once since the log was last cleared."""
        peak: int = self._control("GET", "requests")["peak_in_flight"]
        return peak

    def advance_clock(self, seconds: float) -> None:
        self._control("POST", "clock", {"advance_seconds": seconds})

    def set_latency(self, seconds: float, jitter: float = 0) -> None:
        self._control("POST", "latency", {"seconds": seconds, "jitter": jitter})

    def reset(self) -> None:
        """Clear faults, latency and the request log; users, tokens and the clock stay."""
        self._control("POST", "reset")


@contextlib.contextmanager
def start_simulator(tmp_dir: Path, *extra_args: str) -> Iterator[SimulatorHandle]:
    """Run `python -m rotator.simulator --port 0` until the block ends; stop it by its pid."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    ready = tmp_dir / f"simulator-{tag}.ready.json"
    token_file = tmp_dir / f"simulator-{tag}.admin-token"
    argv = [
        sys.executable, "-m", "rotator.simulator", "--port", "0",
        "--ready-file", str(ready), "--admin-token-file", str(token_file), *extra_args,
    ]
    process = ServerProcess(argv, log_path=tmp_dir / f"simulator-{tag}.log", cwd=REPO_ROOT)
    handle: SimulatorHandle | None = None
    try:
        process.wait_ready(ready.exists, timeout=30.0, what="simulator ready file")
        info = json.loads(ready.read_text())
        handle = SimulatorHandle(
            info["url"], token_file.read_text().strip(), info["pid"], process
        )
        yield handle
    finally:
        if handle is not None:
            handle.close()
        process.stop()


@pytest.fixture(scope="session")
def simulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    """One simulator for the whole test run (per xdist worker)."""
    with start_simulator(tmp_path_factory.mktemp("simulator")) as handle:
        yield handle


@pytest.fixture
def simulator(simulator_server: SimulatorHandle) -> SimulatorHandle:
    """The shared simulator with faults, latency and the request log cleared."""
    simulator_server.reset()
    return simulator_server
