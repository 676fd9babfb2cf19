"""The simulator keeps browsers out: a foreign Host (DNS rebinding), a foreign Origin
(cross-origin) or a non-JSON body (a form or text/plain "simple" request) is refused on
every route, control or API, and changes nothing; the admin token can come from the
environment or a file instead of argv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.simulator_fixtures import SimulatorHandle, start_simulator, unique_username


def port_of(sim: SimulatorHandle) -> int:
    return int(sim.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("path", ["/_sim/state", "/v1/active_accounts"])
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "rebound.example.com"}, 403),
        ({"Host": "rebound.example.com:8765"}, 403),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://127.0.0.1:1"}, 403),
    ],
)
def test_foreign_host_or_origin_is_refused(
    simulator: SimulatorHandle, path: str, headers: dict[str, str], status: int
) -> None:
    """Reads of every route answer 403 to a foreign Host or Origin, with no secret in it."""
    response = simulator.client.get(
        path, headers={"Authorization": f"Bearer {simulator.admin_token}", **headers}
    )
    assert response.status_code == status
    assert simulator.admin_token not in response.text and "token" not in response.text


def test_own_origin_and_loopback_names_are_served(simulator: SimulatorHandle) -> None:
    """The server's own origin, localhost and 127.0.0.1 still work."""
    port = port_of(simulator)
    for headers in (
        {"Origin": f"http://127.0.0.1:{port}"},
        {"Origin": f"http://localhost:{port}"},
        {"Host": f"localhost:{port}"},
    ):
        assert simulator.client.get("/_sim/health", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "ctype", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"]
)
def test_simple_cross_site_posts_change_nothing(simulator: SimulatorHandle, ctype: str) -> None:
    """A form/text POST to a control or API route is a 415 and creates nothing."""
    user = unique_username("svc_csrf")
    body = f'{{"username": "{user}"}}'
    seeded = simulator.client.post("/_sim/seed", content=body, headers={"Content-Type": ctype})
    created = simulator.client.post(
        "/v1/users",
        content=body,
        headers={"Content-Type": ctype, "Authorization": f"Bearer {simulator.admin_token}"},
    )
    assert (seeded.status_code, created.status_code) == (415, 415)
    assert all(u["username"] != user for u in simulator.state()["users"])


def test_admin_token_from_env_or_file(tmp_path: Path) -> None:
    """--admin-token-env and --admin-token-in seed the admin token without putting it on argv."""
    token = "env-admin-" + os.urandom(8).hex()
    (tmp_path / "admin").write_text(token + "\n")
    for flag, value in (("--admin-token-env", "SIM_ADMIN_FOR_TEST"), ("--admin-token-in", str(tmp_path / "admin"))):
        os.environ["SIM_ADMIN_FOR_TEST"] = token
        try:
            with start_simulator(tmp_path / flag.strip("-"), flag, value) as sim:
                answer = httpx.get(
                    f"{sim.url}/v1/active_accounts", headers={"Authorization": f"Bearer {token}"}
                )
                assert answer.status_code == 200
        finally:
            del os.environ["SIM_ADMIN_FOR_TEST"]


def test_two_admin_token_sources_are_a_usage_error(tmp_path: Path) -> None:
    """Giving the admin token twice is refused with a one-line usage error."""
    done = subprocess.run(
        [sys.executable, "-m", "rotator.simulator", "--port", "0", "--admin-token", "a" * 12,
         "--admin-token-env", "X"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0 and "at most one of" in done.stderr
