"""MotherDuckClient against the simulator over real HTTP: shapes, errors, retries, faults."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import structlog

from rotator.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    WrongRoute,
)
from rotator.motherduck.client import MotherDuckClient, RetryEvent, RetryPolicy
from rotator.secret import Secret
from tests.support.procs import free_port, wait_until
from tests.support.simulator_fixtures import SimulatorHandle, unique_username


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def events() -> list[RetryEvent]:
    return []


@pytest.fixture
def client(simulator: SimulatorHandle, events: list[RetryEvent]) -> Iterator[MotherDuckClient]:
    """An admin client with retries that compute real waits but do not sleep."""
    with MotherDuckClient(
        simulator.url,
        Secret(simulator.admin_token),
        retry=RetryPolicy.no_wait(),
        on_retry=events.append,
    ) as md:
        yield md


@pytest.fixture
def account(client: MotherDuckClient) -> str:
    return client.create_service_account(unique_username())


def assert_no_secret(exc: BaseException, *values: str) -> None:
    for value in values:
        assert value not in str(exc)
        assert value not in repr(exc)


class TestShapes:
    def test_token_lifecycle(
        self, simulator: SimulatorHandle, client: MotherDuckClient, account: str
    ) -> None:
        """Create, list, find by name and revoke agree with the simulator's state."""
        created = client.create_token(account, "rotator-run-1", ttl_seconds=3600)
        assert simulator.whoami(created.token.reveal()) == account
        assert created.info.name == "rotator-run-1"
        assert created.info.created_ts is not None and created.info.expire_at is not None
        assert created.info.expire_at > created.info.created_ts
        assert (created.info.token_type, created.info.read_only) == ("read_write", False)

        forever = client.create_token(account, "no-ttl")
        assert forever.info.expire_at is None
        listed = {t.id: t for t in client.list_tokens(account)}
        assert (
            set(listed) == {created.info.id, forever.info.id} == simulator.live_token_ids(account)
        )
        assert listed[created.info.id] == created.info
        assert [t.id for t in client.find_tokens_by_name(account, "rotator-run-1")] == [
            created.info.id
        ]

        assert client.revoke_token(account, created.info.id) is True
        assert client.revoke_token(account, created.info.id) is False
        assert simulator.live_token_ids(account) == {forever.info.id}
        assert simulator.whoami(created.token.reveal()) is None

    def test_read_scaling_token(self, client: MotherDuckClient, account: str) -> None:
        """A read_scaling token comes back read-only."""
        created = client.create_token(account, "rs", token_type="read_scaling")
        assert (created.info.token_type, created.info.read_only) == ("read_scaling", True)

    def test_accounts_and_ducklings(
        self, simulator: SimulatorHandle, client: MotherDuckClient
    ) -> None:
        """Service accounts, duckling configs and active accounts round-trip."""
        username = client.create_service_account(unique_username())
        config = client.get_duckling_config(username)
        assert config["read_write"]["instance_size"] == "pulse"
        wanted = {
            "read_write": {"instance_size": "standard", "cooldown_seconds": 300},
            "read_scaling": {"instance_size": "pulse", "flock_size": 2},
        }
        assert client.put_duckling_config(username, wanted) == wanted
        assert client.get_duckling_config(username) == wanted
        assert username in [a["username"] for a in client.active_accounts()]
        assert client.delete_user(username) == username
        with pytest.raises(NotFound, match=username):
            client.list_tokens(username)


class TestErrors:
    def test_bad_admin_token_is_unauthorized(self, simulator: SimulatorHandle) -> None:
        """A wrong admin token gives Unauthorized, and the message says so without the token."""
        bad = "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.not-a-real-signature"
        with (
            MotherDuckClient(simulator.url, Secret(bad)) as md,
            pytest.raises(Unauthorized) as info,
        ):
            md.active_accounts()
        assert "admin token was rejected" in str(info.value)
        assert_no_secret(info.value, bad)

    def test_non_admin_token_is_forbidden(self, simulator: SimulatorHandle, account: str) -> None:
        """A valid service-account token is not an admin: Forbidden with the issue text."""
        secret, _ = simulator.seed(account)
        with (
            MotherDuckClient(simulator.url, Secret(secret)) as md,
            pytest.raises(Forbidden) as info,
        ):
            md.list_tokens(unique_username())
        assert "minimum role org_admin is required" in str(info.value)
        assert_no_secret(info.value, secret, simulator.admin_token)

    def test_bad_request_lists_issues(self, client: MotherDuckClient, account: str) -> None:
        """Validation failures carry each issue message."""
        with pytest.raises(BadRequest) as info:
            client.create_token(account, "", ttl_seconds=5)
        assert "name:" in str(info.value) and "ttl:" in str(info.value)
        assert len(info.value.issues) == 2

    def test_json_404_versus_wrong_route(
        self, simulator: SimulatorHandle, client: MotherDuckClient
    ) -> None:
        """An unknown user is NotFound; a wrong api_url path prefix is WrongRoute."""
        with pytest.raises(NotFound):
            client.list_tokens(unique_username())
        wrong_url = simulator.url + "/api"
        md = MotherDuckClient(wrong_url, Secret(simulator.admin_token))
        with md, pytest.raises(WrongRoute) as info:
            md.list_tokens("svc_x")
        assert wrong_url in str(info.value)
        assert_no_secret(info.value, simulator.admin_token)

    def test_nothing_listening_is_transport_error(self) -> None:
        """Connection refused is retried, then TransportError."""
        seen: list[RetryEvent] = []
        with (
            MotherDuckClient(
                f"http://127.0.0.1:{free_port()}",
                Secret("eyJh.eyJi.c"),
                retry=RetryPolicy.no_wait(attempts=2),
                on_retry=seen.append,
            ) as md,
            pytest.raises(TransportError, match="ConnectError"),
        ):
            md.create_token("svc_x", "n")
        assert [e.reason for e in seen] == ["ConnectError"]


class TestRetriesAndFaults:
    def test_429_retry_after_respected(
        self,
        simulator: SimulatorHandle,
        client: MotherDuckClient,
        events: list[RetryEvent],
        account: str,
    ) -> None:
        """An injected 429 with Retry-After is retried after exactly that wait."""
        simulator.add_fault(
            route="create_token", action="error", status=429, retry_after=0.2, times=2
        )
        created = client.create_token(account, "after-429")
        assert [e.wait_seconds for e in events] == [0.2, 0.2]
        assert {e.reason for e in events} == {"429"}
        assert simulator.live_token_ids(account) == {created.info.id}

    def test_429_exhausted(
        self, simulator: SimulatorHandle, client: MotherDuckClient, account: str
    ) -> None:
        """Endless 429s stop after the attempt budget with RateLimited."""
        simulator.add_fault(route="list_tokens", action="error", status=429, retry_after=0.1)
        with pytest.raises(RateLimited) as info:
            client.list_tokens(account)
        assert info.value.retry_after == 0.1
        statuses = [r["status"] for r in simulator.requests() if r["route"] == "list_tokens"]
        assert statuses == [429, 429, 429, 429]

    def test_503_retried_on_list(
        self,
        simulator: SimulatorHandle,
        client: MotherDuckClient,
        events: list[RetryEvent],
        account: str,
    ) -> None:
        """A transient 503 on a GET is retried and the call succeeds."""
        simulator.add_fault(route="list_tokens", action="error", status=503, times=1)
        assert client.list_tokens(account) == []
        assert [e.reason for e in events] == ["503"]

    def test_dropped_revoke_is_retried_and_reports_gone(
        self, simulator: SimulatorHandle, client: MotherDuckClient, account: str
    ) -> None:
        """A DELETE whose answer was lost is retried; the 404 then means already revoked."""
        _, token_id = simulator.seed(account)
        simulator.add_fault(route="revoke_token", action="drop_after_commit", times=1)
        assert client.revoke_token(account, token_id) is False
        assert simulator.live_token_ids(account) == set()

    def test_create_dropped_after_commit_is_outcome_unknown(
        self, simulator: SimulatorHandle, client: MotherDuckClient, account: str
    ) -> None:
        """The token exists but its answer was lost: OutcomeUnknown, no retry, findable by name."""
        simulator.add_fault(route="create_token", action="drop_after_commit", times=1)
        with pytest.raises(OutcomeUnknown) as info:
            client.create_token(account, "rotator-lost-1")
        assert (info.value.username, info.value.token_name) == (account, "rotator-lost-1")
        creates = [r for r in simulator.requests() if r["route"] == "create_token"]
        assert len(creates) == 1
        (token,) = simulator.tokens(account)
        assert token["name"] == "rotator-lost-1"
        assert_no_secret(info.value, token["secret"], simulator.admin_token)
        found = client.find_tokens_by_name(account, "rotator-lost-1")
        assert [t.id for t in found] == [token["id"]]

    def test_create_500_is_outcome_unknown(
        self, simulator: SimulatorHandle, client: MotherDuckClient, account: str
    ) -> None:
        """A 5xx on create is not retried; nothing was made, which listing by name shows."""
        simulator.add_fault(route="create_token", action="error", status=503, times=1)
        with pytest.raises(OutcomeUnknown):
            client.create_token(account, "rotator-503")
        assert client.find_tokens_by_name(account, "rotator-503") == []

    def test_create_read_timeout_is_outcome_unknown(
        self, simulator: SimulatorHandle, account: str
    ) -> None:
        """A create slower than the client timeout is OutcomeUnknown; the server still mints."""
        simulator.add_fault(route="create_token", action="delay", seconds=1.5, times=1)
        policy = dataclasses.replace(RetryPolicy.no_wait(), timeout=0.5)
        with MotherDuckClient(
            simulator.url, Secret(simulator.admin_token), timeout=0.5, retry=policy
        ) as md:
            with pytest.raises(OutcomeUnknown, match="ReadTimeout"):
                md.create_token(account, "rotator-slow")
            # The server finishes the create after its delay, as a real one would.
            wait_until(
                lambda: bool(md.find_tokens_by_name(account, "rotator-slow")),
                timeout=10.0,
                what="the delayed create to land",
            )

    def test_create_dropped_before_commit_makes_nothing(
        self, simulator: SimulatorHandle, client: MotherDuckClient, account: str
    ) -> None:
        """A drop before commit is still OutcomeUnknown to us; listing shows nothing was made."""
        simulator.add_fault(route="create_token", action="drop_before_commit", times=1)
        with pytest.raises(OutcomeUnknown):
            client.create_token(account, "rotator-never")
        assert client.find_tokens_by_name(account, "rotator-never") == []

    def test_gateway_error_on_other_post_not_retried(
        self, simulator: SimulatorHandle, client: MotherDuckClient
    ) -> None:
        """create_service_account is a POST: a 502 is raised, not retried."""
        simulator.add_fault(route="create_user", action="error", status=502, times=1)
        with pytest.raises(ServerError):
            client.create_service_account(unique_username())
        assert len([r for r in simulator.requests() if r["route"] == "create_user"]) == 1
