"""The simulator over real HTTP: endpoint shapes, error bodies, faults, CLI and restarts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator.simulator.cli import main as simulator_main
from tests.support.procs import wait_until
from tests.support.simulator_fixtures import SimulatorHandle, start_simulator, unique_username

TTL_ISSUE = "ttl: must be an integer between 300 and 31536000 seconds"
UNAUTHORIZED = {"code": "UNAUTHORIZED", "message": "Invalid Credentials"}
NOT_ADMIN = {
    "code": "FORBIDDEN",
    "message": "Unauthorized",
    "issues": [{"message": "minimum role org_admin is required"}],
}


def bad_request(*issues: str) -> dict[str, Any]:
    return {
        "code": "BAD_REQUEST",
        "message": "Bad Request",
        "issues": [{"message": text} for text in issues],
    }


@pytest.fixture
def account(simulator: SimulatorHandle) -> str:
    """A fresh service account with no tokens."""
    username = unique_username()
    response = simulator.api("POST", "/v1/users", json={"username": username})
    assert response.status_code == 200
    return username


def create_token(sim: SimulatorHandle, username: str, **body: Any) -> httpx.Response:
    return sim.api("POST", f"/v1/users/{username}/tokens", json={"name": "t", **body})


class TestSuccessShapes:
    def test_create_token(self, simulator: SimulatorHandle, account: str) -> None:
        """Creating a token answers 200 with the secret, id, times and type, and it works."""
        response = create_token(simulator, account, name="ci", ttl=3600)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {
            "token", "id", "name", "expire_at", "created_ts", "read_only", "token_type"
        }
        assert body["created_ts"].endswith("Z") and body["expire_at"].endswith("Z")
        assert body["token"].count(".") == 2
        assert simulator.whoami(body["token"]) == account

    def test_list_tokens(self, simulator: SimulatorHandle, account: str) -> None:
        """Listing answers {"tokens": [...]} with metadata and never a secret."""
        created = create_token(simulator, account).json()
        body = simulator.api("GET", f"/v1/users/{account}/tokens").json()
        assert body == {
            "tokens": [
                {
                    "id": created["id"],
                    "name": "t",
                    "created_ts": created["created_ts"],
                    "read_only": False,
                    "token_type": "read_write",
                }
            ]
        }
        assert created["token"] not in json.dumps(body)

    def test_revoke(self, simulator: SimulatorHandle, account: str) -> None:
        """Revoking by id answers {}; the token stops working and leaves the list."""
        created = create_token(simulator, account).json()
        response = simulator.api("DELETE", f"/v1/users/{account}/tokens/{created['id']}")
        assert (response.status_code, response.json()) == (200, {})
        assert simulator.whoami(created["token"]) is None
        assert simulator.live_token_ids(account) == set()
        again = simulator.api("DELETE", f"/v1/users/{account}/tokens/{created['id']}")
        assert again.status_code == 404 and again.json()["code"] == "NOT_FOUND"

    def test_create_and_delete_user(self, simulator: SimulatorHandle) -> None:
        """Create and delete answer {"username"}; deleting kills the account's tokens."""
        username = unique_username()
        created = simulator.api("POST", "/v1/users", json={"username": username})
        assert (created.status_code, created.json()) == (200, {"username": username})
        secret, _ = simulator.seed(username)
        deleted = simulator.api("DELETE", f"/v1/users/{username}")
        assert (deleted.status_code, deleted.json()) == (200, {"username": username})
        assert simulator.whoami(secret) is None

    def test_instances_and_active_accounts(self, simulator: SimulatorHandle, account: str) -> None:
        """GET shows the default config, PUT answers it unwrapped, and the account is active."""
        path = f"/v1/users/{account}/instances"
        assert simulator.api("GET", path).json() == {
            "read_write": {"instance_size": "pulse"},
            "read_scaling": {"instance_size": "pulse", "flock_size": 0},
        }
        config = {
            "read_write": {"instance_size": "jumbo", "cooldown_seconds": 600},
            "read_scaling": {"instance_size": "standard", "flock_size": 4},
        }
        put = simulator.api("PUT", path, json={"config": config})
        assert (put.status_code, put.json()) == (200, config)
        assert simulator.api("GET", path).json() == config
        accounts = simulator.api("GET", "/v1/active_accounts").json()["accounts"]
        [mine] = [a for a in accounts if a["username"] == account]
        assert [(d["type"], d["status"]) for d in mine["ducklings"]] == [("read_write", "running")]

    def test_whoami(self, simulator: SimulatorHandle, account: str) -> None:
        """whoami names the user for read_write and read_scaling tokens, 401 JSON otherwise."""
        rw = create_token(simulator, account).json()["token"]
        rs = create_token(simulator, account, token_type="read_scaling").json()["token"]
        assert simulator.whoami(rw) == account and simulator.whoami(rs) == account
        response = simulator.client.get("/_sim/whoami", headers={"Authorization": "Bearer x"})
        assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


class TestErrors:
    @pytest.mark.parametrize(
        ("body", "issues"),
        [
            ({"name": ""}, ["name: must be 1-255 characters"]),
            ({"name": "t", "ttl": 10}, [TTL_ISSUE]),
            ({"name": "t", "token_type": "x"}, ["token_type: must be read_write or read_scaling"]),
            ({}, ["name: is required"]),
        ],
    )
    def test_create_token_400(
        self, simulator: SimulatorHandle, account: str, body: dict[str, Any], issues: list[str]
    ) -> None:
        """Invalid create-token bodies answer 400 with one issue per bad field."""
        response = simulator.api("POST", f"/v1/users/{account}/tokens", json=body)
        assert (response.status_code, response.json()) == (400, bad_request(*issues))

    def test_malformed_json_400(self, simulator: SimulatorHandle, account: str) -> None:
        """A body that is not JSON answers 400."""
        response = simulator.client.post(
            f"/v1/users/{account}/tokens",
            content=b"{nope",
            headers={"Authorization": f"Bearer {simulator.admin_token}"},
        )
        assert (response.status_code, response.json()) == (400, bad_request("body: malformed JSON"))

    def test_create_user_400(self, simulator: SimulatorHandle, account: str) -> None:
        """Bad and duplicate (case-insensitive) usernames answer 400 naming username."""
        cases = {
            "a-b-c": "username: may contain only letters, digits and underscore",
            "9abc": "username: must start with a letter",
            "ab": "username: must be 3-255 characters",
            account.upper(): "username: already exists",
        }
        for username, issue in cases.items():
            response = simulator.api("POST", "/v1/users", json={"username": username})
            assert (response.status_code, response.json()) == (400, bad_request(issue))

    def test_put_instances_400(self, simulator: SimulatorHandle, account: str) -> None:
        """A config breaking the Duckling rules answers 400 naming each field."""
        config = {
            "read_write": {"instance_size": "pulse", "cooldown_seconds": 120},
            "read_scaling": {"instance_size": "tiny", "flock_size": 99},
        }
        response = simulator.api("PUT", f"/v1/users/{account}/instances", json={"config": config})
        assert response.status_code == 400
        assert response.json() == bad_request(
            "config.read_write.cooldown_seconds: not allowed with instance_size pulse",
            "config.read_scaling.instance_size: must be one of pulse, standard, jumbo, mega, giga",
            "config.read_scaling.flock_size: must be an integer between 0 and 64",
        )
        missing = simulator.api("PUT", f"/v1/users/{account}/instances", json={"config": {}})
        assert missing.json()["issues"] == [
            {"message": "config.read_write: is required"},
            {"message": "config.read_scaling: is required"},
        ]

    def test_401_for_missing_unknown_revoked_expired(
        self, simulator: SimulatorHandle, account: str
    ) -> None:
        """No token, an unknown, a revoked and an expired token all get 401 Invalid Credentials."""
        revoked, revoked_id = simulator.seed(account, token_name="r")
        simulator.api("DELETE", f"/v1/users/{account}/tokens/{revoked_id}")
        expired, _ = simulator.seed(account, token_name="e", ttl=300)
        simulator.advance_clock(301)
        for token in ("", "garbage", revoked, expired):
            response = simulator.api("GET", "/v1/active_accounts", token=token)
            assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
        assert simulator.live_token_ids(account) == set()

    def test_403_for_non_admin(self, simulator: SimulatorHandle, account: str) -> None:
        """A service account's token gets 403 with the org_admin issue on admin routes."""
        secret, _ = simulator.seed(account)
        for method, path in [
            ("GET", f"/v1/users/{account}/tokens"),
            ("GET", "/v1/active_accounts"),
            ("DELETE", f"/v1/users/{account}"),
        ]:
            response = simulator.api(method, path, token=secret)
            assert (response.status_code, response.json()) == (403, NOT_ADMIN)

    def test_read_scaling_403(self, simulator: SimulatorHandle, account: str) -> None:
        """A read_scaling token is refused by the REST API with 403."""
        secret, _ = simulator.seed(account, token_type="read_scaling")
        response = simulator.api("POST", f"/v1/users/{account}/tokens", token=secret,
                                 json={"name": "x"})
        assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"

    def test_self_token_creation(self, simulator: SimulatorHandle, account: str) -> None:
        """A non-admin may create a token for itself but not for another account."""
        secret, _ = simulator.seed(account)
        mine = simulator.api("POST", f"/v1/users/{account}/tokens", token=secret,
                             json={"name": "self"})
        assert mine.status_code == 200 and simulator.whoami(mine.json()["token"]) == account
        other = simulator.api("POST", f"/v1/users/{unique_username()}/tokens", token=secret,
                              json={"name": "x"})
        assert (other.status_code, other.json()) == (403, NOT_ADMIN)

    def test_json_404_vs_plain_404(self, simulator: SimulatorHandle) -> None:
        """A missing user is a JSON NOT_FOUND; an unknown route or method is plain text."""
        missing = simulator.api("GET", f"/v1/users/{unique_username()}/tokens")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
        assert missing.headers["content-type"] == "application/json"
        for method, path in [("GET", "/v1/nothing"), ("PATCH", "/v1/users"), ("GET", "/v2/x")]:
            wrong = simulator.api(method, path)
            assert (wrong.status_code, wrong.text) == (404, "Not Found")
            assert wrong.headers["content-type"].startswith("text/plain")


class TestFaults:
    def test_error_statuses_have_json_bodies(
        self, simulator: SimulatorHandle, account: str
    ) -> None:
        """Injected 500/502/503 answer with the matching JSON error body."""
        expected = {
            500: ("INTERNAL_SERVER_ERROR", "Internal Error"),
            502: ("BAD_GATEWAY", "Bad Gateway"),
            503: ("SERVICE_UNAVAILABLE", "Service Unavailable"),
        }
        for status, (code, message) in expected.items():
            simulator.add_fault(route="list_tokens", action="error", status=status, times=1)
            response = simulator.api("GET", f"/v1/users/{account}/tokens")
            assert response.status_code == status
            assert response.json() == {"code": code, "message": message}

    def test_429_has_retry_after(self, simulator: SimulatorHandle, account: str) -> None:
        """An injected 429 carries Retry-After (default 1, or the rule's retry_after)."""
        simulator.add_fault(route="create_token", action="error", status=429, times=1)
        simulator.add_fault(route="create_token", action="error", status=429, retry_after=7,
                            times=1)
        first, second = create_token(simulator, account), create_token(simulator, account)
        assert (first.status_code, first.headers["retry-after"]) == (429, "1")
        assert (second.status_code, second.headers["retry-after"]) == (429, "7")
        assert first.json()["code"] == "TOO_MANY_REQUESTS"
        assert create_token(simulator, account).status_code == 200
        assert simulator.live_token_ids(account) != set()

    def test_drop_after_commit(self, simulator: SimulatorHandle, account: str) -> None:
        """drop_after_commit creates the token but the client sees the connection die."""
        simulator.add_fault(route="create_token", action="drop_after_commit", times=1)
        with pytest.raises(httpx.TransportError) as info:
            create_token(simulator, account, name="lost-answer")
        assert not isinstance(info.value, httpx.TimeoutException)
        [token] = simulator.tokens(account)
        assert token["name"] == "lost-answer" and token["live"] is True
        assert simulator.requests()[-1]["status"] is None

    def test_drop_after_commit_revoke(self, simulator: SimulatorHandle, account: str) -> None:
        """drop_after_commit on revoke really revokes while the client gets no answer."""
        _, token_id = simulator.seed(account)
        simulator.add_fault(route="revoke_token", action="drop_after_commit")
        with pytest.raises(httpx.TransportError):
            simulator.api("DELETE", f"/v1/users/{account}/tokens/{token_id}")
        assert simulator.live_token_ids(account) == set()

    def test_drop_before_commit(self, simulator: SimulatorHandle, account: str) -> None:
        """drop_before_commit closes the connection and creates nothing."""
        simulator.add_fault(route="create_token", action="drop_before_commit", times=1)
        with pytest.raises(httpx.TransportError):
            create_token(simulator, account)
        assert simulator.tokens(account, live_only=False) == []
        assert create_token(simulator, account).status_code == 200

    def test_delay_times_out_then_commits(self, simulator: SimulatorHandle, account: str) -> None:
        """A delay longer than the client timeout times out, and the operation still happens."""
        simulator.add_fault(route="create_token", action="delay", seconds=1.0, username=account)
        with pytest.raises(httpx.ReadTimeout):
            simulator.client.post(
                f"/v1/users/{account}/tokens",
                json={"name": "slow"},
                headers={"Authorization": f"Bearer {simulator.admin_token}"},
                timeout=0.2,
            )
        wait_until(lambda: len(simulator.tokens(account)) == 1, timeout=10, what="slow create")

    def test_latency_applies(self, simulator: SimulatorHandle, account: str) -> None:
        """Global latency delays API calls but not control calls."""
        simulator.set_latency(0.3)
        started = time.monotonic()
        simulator.api("GET", f"/v1/users/{account}/tokens")
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        simulator.state()
        assert time.monotonic() - started < 0.3

    def test_times_and_username_filter(self, simulator: SimulatorHandle, account: str) -> None:
        """A rule fires only for its account and only `times` times; GET shows it fired."""
        other = unique_username()
        simulator.api("POST", "/v1/users", json={"username": other})
        simulator.add_fault(route="*", action="error", status=503, times=2, username=account)
        statuses = [simulator.api("GET", f"/v1/users/{account}/tokens").status_code
                    for _ in range(3)]
        assert statuses == [503, 503, 200]
        assert simulator.api("GET", f"/v1/users/{other}/tokens").status_code == 200
        assert simulator.faults()[0]["fired"] == 2

    def test_control_routes_not_faulted_or_recorded(
        self, simulator: SimulatorHandle, account: str
    ) -> None:
        """With every route failing, control calls still work and only API calls are recorded."""
        simulator.clear_requests()
        simulator.add_fault(route="*", action="error", status=500)
        simulator.state()
        assert simulator.api("GET", "/v1/active_accounts").status_code == 500
        simulator.seed(account)
        [entry] = simulator.requests()
        assert entry["route"] == "active_accounts" and entry["status"] == 500
        assert set(entry) == {"method", "path", "route", "status", "ts", "fault"}
        simulator.clear_faults()
        assert simulator.faults() == []

    def test_bad_fault_rule_400(self, simulator: SimulatorHandle) -> None:
        """An invalid fault rule is refused with a 400 naming each bad field."""
        response = simulator.client.post("/_sim/faults", json={"route": "x", "action": "boom"})
        assert response.status_code == 400
        fields = [issue["message"].split(":")[0] for issue in response.json()["issues"]]
        assert fields == ["route", "action"]


class TestRecording:
    def test_requests_record_routes_without_secrets(
        self, simulator: SimulatorHandle, account: str
    ) -> None:
        """Each API call is recorded with its route name and status, never its body or token."""
        simulator.clear_requests()
        secret = create_token(simulator, account).json()["token"]
        simulator.api("GET", f"/v1/users/{account}/tokens")
        simulator.whoami(secret)
        simulator.api("GET", "/nowhere")
        entries = simulator.requests()
        assert [(e["route"], e["status"]) for e in entries] == [
            ("create_token", 200), ("list_tokens", 200), ("whoami", 200), ("unknown", 404)
        ]
        assert secret not in json.dumps(entries)
        assert simulator.admin_token not in json.dumps(entries)
        simulator.clear_requests()
        assert simulator.requests() == []

    def test_concurrent_creates(self, simulator: SimulatorHandle, account: str) -> None:
        """32 concurrent clients creating tokens all succeed with distinct ids."""
        ids: list[str] = []
        lock = threading.Lock()

        def work() -> None:
            with httpx.Client(base_url=simulator.url, timeout=10) as client:
                for _ in range(5):
                    response = client.post(
                        f"/v1/users/{account}/tokens",
                        json={"name": "c"},
                        headers={"Authorization": f"Bearer {simulator.admin_token}"},
                    )
                    with lock:
                        ids.append(response.json()["id"])

        threads = [threading.Thread(target=work) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(ids)) == 160
        assert simulator.live_token_ids(account) == set(ids)


class TestProcess:
    def test_state_file_survives_restart(self, tmp_path: Path) -> None:
        """Users, tokens and revocations saved to --state-file come back after a restart."""
        state = tmp_path / "state.json"
        with start_simulator(tmp_path, "--state-file", str(state)) as sim:
            username = unique_username()
            sim.api("POST", "/v1/users", json={"username": username})
            keep = create_token(sim, username, name="keep").json()
            gone = create_token(sim, username, name="gone").json()
            sim.api("DELETE", f"/v1/users/{username}/tokens/{gone['id']}")
            assert state.stat().st_mode & 0o777 == 0o600
        with start_simulator(tmp_path, "--state-file", str(state)) as sim:
            assert sim.whoami(keep["token"]) == username
            assert sim.whoami(gone["token"]) is None
            listed = sim.api("GET", f"/v1/users/{username}/tokens").json()["tokens"]
            assert [t["id"] for t in listed] == [keep["id"]]

    def test_cli_flags_and_clean_stop(self, tmp_path: Path) -> None:
        """--admin-token, --service-account and --fault apply; SIGTERM exits 0; no secret logged."""
        fault = json.dumps({"route": "list_tokens", "action": "error", "status": 502, "times": 1})
        args = ("--admin-token", "cli-admin", "--service-account", "svc_cli", "--fault", fault)
        with start_simulator(tmp_path, *args) as sim:
            assert sim.admin_token == "cli-admin"
            secret = create_token(sim, "svc_cli").json()["token"]
            assert sim.whoami(secret) == "svc_cli"
            assert sim.api("GET", "/v1/users/svc_cli/tokens").status_code == 502
            assert sim.api("GET", "/v1/users/svc_cli/tokens").status_code == 200
            secrets = sim.all_secrets()
            process = sim.process
        assert process is not None and process.proc.returncode == 0
        log = process.log_path.read_text()
        ready_lines = [line for line in log.splitlines() if line.startswith("{")]
        assert [set(json.loads(line)) for line in ready_lines] == [{"url", "pid"}]
        assert "create_token 200" in log
        for value in secrets:
            assert value not in log

    def test_non_loopback_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A non-loopback --host is refused (exit 2) unless --allow-non-loopback is given."""
        assert simulator_main(["--host", "10.1.2.3", "--port", "0"]) == 2
        assert "--allow-non-loopback" in capsys.readouterr().err

    def test_bad_flags_exit_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad fault rule or service-account name is a usage error (exit 2), nothing started."""
        assert simulator_main(["--port", "0", "--fault", '{"action": "nope"}']) == 2
        assert simulator_main(["--port", "0", "--service-account", "bad-name"]) == 2
        assert simulator_main(["--no-such-flag"]) == 2
        capsys.readouterr()
