"""MotherDuckClient over httpx.MockTransport: status mapping, retry rules, parsing, secrecy."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import structlog

from rotator.errors import (
    BadRequest,
    ConfigError,
    Forbidden,
    MotherDuckError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    WrongRoute,
)
from rotator.motherduck.client import (
    CreatedToken,
    MotherDuckClient,
    RetryEvent,
    RetryPolicy,
    TokenInfo,
)
from rotator.secret import Secret

ADMIN = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VybmFtZSI6ImFkbWluIn0.admin-signature-value"
MINTED = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VybmFtZSI6InN2YyJ9.minted-signature-value"
URL = "https://api.example.test"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


class Recorder:
    """A MockTransport handler that answers from a script and records every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def make(
    *answers: httpx.Response | Exception | Handler,
    retry: RetryPolicy | None = None,
    url: str = URL,
) -> tuple[MotherDuckClient, Recorder, list[RetryEvent]]:
    recorder = Recorder(*answers)
    events: list[RetryEvent] = []
    client = MotherDuckClient(
        url,
        Secret(ADMIN),
        transport=httpx.MockTransport(recorder),
        retry=retry or RetryPolicy.no_wait(),
        on_retry=events.append,
    )
    return client, recorder, events


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def api_error(status: int, code: str, message: str, *issues: str) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if issues:
        body["issues"] = [{"message": i} for i in issues]
    return httpx.Response(status, json=body)


def created_body(**extra: Any) -> dict[str, Any]:
    return {
        "token": MINTED,
        "id": "11111111-2222-3333-4444-555555555555",
        "name": "rotator-svc-abc",
        "created_ts": "2026-01-01T12:00:00.000Z",
        "read_only": False,
        "token_type": "read_write",
        **extra,
    }


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), repr(exc.args)):
        assert ADMIN not in text
        assert MINTED not in text


class TestSuccessShapes:
    def test_create_token_sends_body_and_auth_and_parses_answer(self) -> None:
        """create_token posts name/ttl/token_type with the bearer token and returns metadata + Secret."""
        client, rec, _ = make(ok(created_body(expire_at="2026-01-01T13:00:00.000Z")))
        created = client.create_token("svc_app", "rotator-svc-abc", ttl_seconds=3600)
        request = rec.requests[0]
        assert request.method == "POST"
        assert request.url.path == "/v1/users/svc_app/tokens"
        assert request.headers["Authorization"] == f"Bearer {ADMIN}"
        assert json.loads(request.content) == {
            "name": "rotator-svc-abc",
            "token_type": "read_write",
            "ttl": 3600,
        }
        assert isinstance(created, CreatedToken)
        assert created.token.reveal() == MINTED
        assert created.info.id == "11111111-2222-3333-4444-555555555555"
        assert created.info.created_ts == datetime(2026, 1, 1, 12, tzinfo=UTC)
        assert created.info.expire_at == datetime(2026, 1, 1, 13, tzinfo=UTC)
        assert MINTED not in repr(created)

    def test_create_without_ttl_omits_it(self) -> None:
        """Without ttl_seconds the body has no ttl (the token never expires)."""
        client, rec, _ = make(ok(created_body()))
        created = client.create_token("svc_app", "n", token_type="read_scaling")
        assert json.loads(rec.requests[0].content) == {"name": "n", "token_type": "read_scaling"}
        assert created.info.expire_at is None

    def test_list_tokens_is_tolerant(self) -> None:
        """Absent optional fields, unknown extras and any RFC 3339 flavour all parse."""
        client, _, _ = make(
            ok(
                {
                    "tokens": [
                        {"id": "a", "created_ts": "2026-01-01T12:00:00Z", "surprise": [1]},
                        {
                            "id": "b",
                            "name": "x",
                            "created_ts": "2026-01-01T14:00:00.123456789+02:00",
                            "expire_at": "2026-02-01t12:00:00.5z",
                            "token_type": "read_scaling",
                            "read_only": True,
                        },
                        {"id": "c", "name": None, "created_ts": "2026-01-01T12:00:00"},
                    ],
                    "next": None,
                }
            )
        )
        a, b, c = client.list_tokens("svc_app")
        assert a == TokenInfo("a", None, datetime(2026, 1, 1, 12, tzinfo=UTC), None)
        assert b.created_ts == datetime(2026, 1, 1, 14, 0, 0, 123456, timezone(timedelta(hours=2)))
        assert b.created_ts == datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
        assert b.expire_at == datetime(2026, 2, 1, 12, 0, 0, 500000, tzinfo=UTC)
        assert (b.token_type, b.read_only) == ("read_scaling", True)
        assert c.created_ts == datetime(2026, 1, 1, 12, tzinfo=UTC)  # naive means UTC

    def test_find_tokens_by_name_filters_exactly(self) -> None:
        """Only tokens whose name equals the wanted one are returned."""
        tokens = [{"id": "1", "name": "run-1"}, {"id": "2", "name": "run-10"}, {"id": "3"}]
        client, _, _ = make(ok({"tokens": tokens}))
        assert [t.id for t in client.find_tokens_by_name("svc_app", "run-1")] == ["1"]

    def test_revoke_true_then_false_when_already_gone(self) -> None:
        """200 means revoked now; a JSON NOT_FOUND means it was already gone."""
        client, rec, _ = make(ok({}), api_error(404, "NOT_FOUND", "Not Found", "token not found"))
        assert client.revoke_token("svc_app", "tok-1") is True
        assert client.revoke_token("svc_app", "tok-1") is False
        assert rec.requests[0].method == "DELETE"
        assert rec.requests[0].url.path == "/v1/users/svc_app/tokens/tok-1"

    def test_revoke_on_wrong_route_raises_not_false(self) -> None:
        """A plain-text 404 (wrong api_url) is never mistaken for "already revoked"."""
        client, _, _ = make(httpx.Response(404, text="Not Found"))
        with pytest.raises(WrongRoute):
            client.revoke_token("svc_app", "tok-1")

    def test_revoke_tolerates_an_empty_body(self) -> None:
        """An empty 200 where `{}` was promised still counts as revoked."""
        client, _, _ = make(httpx.Response(200, content=b""))
        assert client.revoke_token("svc_app", "tok-1") is True

    def test_accounts_and_ducklings(self) -> None:
        """Users, duckling configs and active accounts use the documented paths and shapes."""
        config = {"read_write": {"instance_size": "pulse"}, "read_scaling": {"flock_size": 0}}
        client, rec, _ = make(
            ok({"username": "svc_new"}),
            ok({"username": "svc_new"}),
            ok(config),
            ok(config),
            ok({"accounts": [{"username": "svc_new", "ducklings": []}]}),
            ok({}),
        )
        assert client.create_service_account("svc_new") == "svc_new"
        assert client.delete_user("svc_new") == "svc_new"
        assert client.get_duckling_config("svc_new") == config
        assert client.put_duckling_config("svc_new", config) == config
        assert client.active_accounts() == [{"username": "svc_new", "ducklings": []}]
        assert client.delete_user("svc_gone") == "svc_gone"  # body without username
        seen = [(r.method, r.url.path) for r in rec.requests]
        assert seen == [
            ("POST", "/v1/users"),
            ("DELETE", "/v1/users/svc_new"),
            ("GET", "/v1/users/svc_new/instances"),
            ("PUT", "/v1/users/svc_new/instances"),
            ("GET", "/v1/active_accounts"),
            ("DELETE", "/v1/users/svc_gone"),
        ]
        assert json.loads(rec.requests[0].content) == {"username": "svc_new"}
        assert json.loads(rec.requests[3].content) == {"config": config}

    def test_path_segments_are_quoted(self) -> None:
        """Usernames and token ids are percent-encoded; '.' and '..' cannot escape the path."""
        client, rec, _ = make(ok({}), ok({"tokens": []}))
        client.revoke_token("a/b?c#d e", "..")
        client.list_tokens(".")
        assert rec.requests[0].url.raw_path == b"/v1/users/a%2Fb%3Fc%23d%20e/tokens/%2E%2E"
        assert rec.requests[1].url.raw_path == b"/v1/users/%2E/tokens"

    def test_api_url_path_prefix_is_kept(self) -> None:
        """A base URL with a path prefix is joined, not replaced."""
        client, rec, _ = make(ok({"tokens": []}), url="https://proxy.test/motherduck/")
        client.list_tokens("svc_app")
        assert str(rec.requests[0].url) == "https://proxy.test/motherduck/v1/users/svc_app/tokens"

    def test_every_call_has_a_timeout(self) -> None:
        """Each request carries the configured timeout, even on an injected client."""
        client, rec, _ = make(ok({"tokens": []}))
        client.list_tokens("svc_app")
        assert rec.requests[0].extensions["timeout"]["read"] == 10.0


class TestStatusMapping:
    @pytest.mark.parametrize(
        ("response", "kind", "words"),
        [
            (
                api_error(400, "BAD_REQUEST", "Bad Request", "name: too long", "ttl: too small"),
                BadRequest,
                ["name: too long", "ttl: too small"],
            ),
            (api_error(401, "UNAUTHORIZED", "Invalid Credentials"), Unauthorized, ["admin token"]),
            (
                api_error(403, "FORBIDDEN", "Unauthorized", "minimum role org_admin is required"),
                Forbidden,
                ["minimum role org_admin is required"],
            ),
            (
                api_error(404, "NOT_FOUND", "Not Found", "user not found"),
                NotFound,
                ["user not found"],
            ),
            (httpx.Response(404, text="Not Found"), WrongRoute, ["api_url", URL]),
            (httpx.Response(404, json={"message": "no route"}), WrongRoute, ["api_url"]),
            (
                api_error(500, "INTERNAL_SERVER_ERROR", "Internal Error"),
                ServerError,
                ["Internal Error"],
            ),
            (httpx.Response(418, text="teapot"), MotherDuckError, ["418"]),
        ],
    )
    def test_status_maps_to_error(
        self, response: httpx.Response, kind: type[MotherDuckError], words: list[str]
    ) -> None:
        """Each documented status becomes its own error, one line, naming method and path."""
        client, rec, _ = make(response)
        with pytest.raises(MotherDuckError) as info:
            client.list_tokens("svc_app")
        assert type(info.value) is kind
        message = str(info.value)
        assert message.startswith("GET /v1/users/svc_app/tokens: ")
        assert "\n" not in message
        for word in words:
            assert word in message
        assert info.value.status == response.status_code
        assert len(rec.requests) == 1
        assert_no_secret(info.value)

    @pytest.mark.parametrize(
        "content",
        [b"\xff\xfe garbage", b"<html>oops</html>", b"[1, 2]", b'{"code": 7, "issues": "x"}'],
    )
    def test_garbled_error_bodies_are_tolerated(self, content: bytes) -> None:
        """A non-JSON or oddly shaped error body still maps by status."""
        client, _, _ = make(httpx.Response(403, content=content))
        with pytest.raises(Forbidden, match=r"^GET /v1/users/svc_app/tokens: 403 "):
            client.list_tokens("svc_app")

    def test_server_text_echoing_a_secret_is_scrubbed(self) -> None:
        """A server message that echoes the bearer token or any JWT never reaches the error."""
        client, _, _ = make(
            api_error(400, "BAD_REQUEST", f"bad token {ADMIN}", f"saw {MINTED}\nand more")
        )
        with pytest.raises(BadRequest) as info:
            client.list_tokens("svc_app")
        assert_no_secret(info.value)
        assert all(ADMIN not in i and MINTED not in i for i in info.value.issues)
        assert "\n" not in str(info.value)

    def test_transport_error_is_translated_and_chained(self) -> None:
        """An httpx transport error becomes TransportError, chained from the original."""
        cause = httpx.ConnectError("connection refused")
        client, _, _ = make(cause, retry=RetryPolicy.no_wait(attempts=1))
        with pytest.raises(TransportError) as info:
            client.list_tokens("svc_app")
        assert info.value.__cause__ is cause
        assert "GET /v1/users/svc_app/tokens" in str(info.value)
        assert "ConnectError" in str(info.value)
        assert_no_secret(info.value)

    def test_invalid_api_url_is_a_config_error(self) -> None:
        """A non-http(s) api_url is refused at construction."""
        with pytest.raises(ConfigError, match="api_url"):
            MotherDuckClient("ftp://x", Secret(ADMIN))

    def test_userinfo_in_api_url_is_not_shown(self) -> None:
        """Credentials embedded in the api_url never appear in messages or repr."""
        client, _, _ = make(httpx.Response(404, text="Not Found"), url="https://u:pw@h.test/x")
        assert "pw" not in repr(client)
        with pytest.raises(WrongRoute) as info:
            client.list_tokens("svc_app")
        assert "u:pw" not in str(info.value)
        assert "https://h.test/x" in str(info.value)


class TestRetries:
    def test_429_honours_retry_after_capped(self) -> None:
        """429 waits what Retry-After says, capped at retry_after_cap, then succeeds."""
        policy = dataclasses.replace(RetryPolicy.no_wait(), retry_after_cap=5.0, timeout=100)
        client, rec, events = make(
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(429, headers={"Retry-After": "120"}),
            ok({"tokens": []}),
            retry=policy,
        )
        assert client.list_tokens("svc_app") == []
        assert len(rec.requests) == 3
        assert [e.wait_seconds for e in events] == [2.0, 5.0]
        assert events[0] == RetryEvent("GET", "/v1/users/{username}/tokens", 1, 2.0, "429")
        assert events[1].attempt == 2

    def test_retry_after_as_http_date(self) -> None:
        """An HTTP-date Retry-After is turned into seconds from now."""
        when = datetime.now(UTC) + timedelta(seconds=3)
        header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
        client, _, events = make(httpx.Response(429, headers={"Retry-After": header}), ok({}))
        client.revoke_token("svc_app", "t")
        assert 1.0 <= events[0].wait_seconds <= 4.0

    def test_429_without_retry_after_uses_backoff(self) -> None:
        """Without Retry-After, the jittered exponential backoff applies."""
        client, _, events = make(httpx.Response(429), httpx.Response(429), ok({}))
        client.revoke_token("svc_app", "t")
        assert 0.25 <= events[0].wait_seconds <= 0.5
        assert 0.5 <= events[1].wait_seconds <= 0.75

    def test_429_exhausted_raises_rate_limited(self) -> None:
        """After `attempts` 429s the last one is raised with its retry_after."""
        client, rec, events = make(httpx.Response(429, headers={"Retry-After": "1"}))
        with pytest.raises(RateLimited) as info:
            client.list_tokens("svc_app")
        assert len(rec.requests) == 4
        assert len(events) == 3
        assert info.value.retry_after == 1.0
        assert info.value.status == 429
        assert "after 4 attempts" in str(info.value)

    def test_429_on_create_is_retried(self) -> None:
        """A 429 means the server did nothing, so even the token create is retried."""
        client, rec, events = make(
            httpx.Response(429, headers={"Retry-After": "0.5"}), ok(created_body())
        )
        assert client.create_token("svc_app", "n").info.name == "rotator-svc-abc"
        assert len(rec.requests) == 2
        assert events[0].method == "POST"
        assert events[0].wait_seconds == 0.5

    @pytest.mark.parametrize("status", [502, 503, 504])
    @pytest.mark.parametrize("call", ["list", "revoke", "put"])
    def test_gateway_errors_retried_on_idempotent_methods(self, status: int, call: str) -> None:
        """502/503/504 are retried on GET, DELETE and PUT."""
        final = ok({"tokens": []} if call == "list" else {})
        client, rec, events = make(httpx.Response(status, text="bad gateway"), final)
        if call == "list":
            client.list_tokens("svc_app")
        elif call == "revoke":
            assert client.revoke_token("svc_app", "t") is True
        else:
            client.put_duckling_config("svc_app", {})
        assert len(rec.requests) == 2
        assert events[0].reason == str(status)

    def test_500_is_not_retried(self) -> None:
        """A plain 500 on GET is raised at once."""
        client, rec, _ = make(api_error(500, "INTERNAL_SERVER_ERROR", "Internal Error"))
        with pytest.raises(ServerError):
            client.list_tokens("svc_app")
        assert len(rec.requests) == 1

    def test_503_exhausted_raises_server_error(self) -> None:
        """Gateway errors stop after `attempts` and raise ServerError."""
        client, rec, events = make(httpx.Response(503), retry=RetryPolicy.no_wait(attempts=3))
        with pytest.raises(ServerError, match="after 3 attempts"):
            client.list_tokens("svc_app")
        assert len(rec.requests) == 3
        assert [e.attempt for e in events] == [1, 2]

    @pytest.mark.parametrize(
        "exc",
        [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), httpx.ReadError("reset")],
    )
    def test_transport_errors_retried_on_get(self, exc: Exception) -> None:
        """Read timeouts and dropped connections are retried on GET."""
        client, rec, events = make(exc, ok({"tokens": []}))
        assert client.list_tokens("svc_app") == []
        assert len(rec.requests) == 2
        assert events[0].reason == type(exc).__name__

    @pytest.mark.parametrize(
        "answer",
        [
            api_error(500, "INTERNAL_SERVER_ERROR", "Internal Error"),
            httpx.Response(502),
            httpx.Response(503),
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.ReadError("connection reset"),
            httpx.WriteTimeout("slow write"),
            ok({"id": "x"}),  # minted, but no secret in the answer
            httpx.Response(200, text="not json"),
        ],
    )
    def test_create_with_lost_answer_is_outcome_unknown_and_not_retried(self, answer: Any) -> None:
        """A create POST that may have reached the server is never retried: OutcomeUnknown."""
        client, rec, events = make(answer)
        with pytest.raises(OutcomeUnknown) as info:
            client.create_token("svc_app", "rotator-svc-run1")
        assert len(rec.requests) == 1
        assert events == []
        assert info.value.username == "svc_app"
        assert info.value.token_name == "rotator-svc-run1"
        assert "rotator-svc-run1" in str(info.value)
        assert_no_secret(info.value)

    @pytest.mark.parametrize(
        ("answer", "in_flight"),
        [
            (api_error(500, "INTERNAL_SERVER_ERROR", "Internal Error"), False),
            (httpx.Response(503), False),
            (httpx.Response(502), True),
            (httpx.Response(504), True),
            (httpx.ReadTimeout("slow"), True),
            (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
            (httpx.Response(200, text="not json"), False),
        ],
    )
    def test_outcome_unknown_says_whether_the_create_may_still_commit(
        self, answer: Any, in_flight: bool
    ) -> None:
        """No answer at all (or a gateway's) means the server may still commit the create."""
        client, _, _ = make(answer)
        with pytest.raises(OutcomeUnknown) as info:
            client.create_token("svc_app", "rotator-svc-run1")
        assert info.value.in_flight is in_flight

    @pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("syn")])
    def test_connect_errors_retried_on_every_method(self, exc: Exception) -> None:
        """A request that was never sent is safe to retry, even the token create."""
        client, rec, _ = make(exc, ok(created_body()))
        assert client.create_token("svc_app", "n").token.reveal() == MINTED
        assert len(rec.requests) == 2

    def test_other_post_not_retried_after_sending(self) -> None:
        """create_service_account is not retried on a read timeout or 503."""
        client, rec, _ = make(httpx.ReadTimeout("slow"))
        with pytest.raises(TransportError):
            client.create_service_account("svc_new")
        client2, rec2, _ = make(httpx.Response(503))
        with pytest.raises(ServerError):
            client2.create_service_account("svc_new")
        assert len(rec.requests) == len(rec2.requests) == 1

    def test_deadline_bounds_retries(self) -> None:
        """No retry is scheduled whose wait would end past the overall timeout."""
        policy = dataclasses.replace(RetryPolicy.no_wait(attempts=10), timeout=1.2, wait_jitter=0)
        client, rec, events = make(httpx.Response(503), retry=policy)
        with pytest.raises(ServerError):
            client.list_tokens("svc_app")
        assert [e.wait_seconds for e in events] == [0.25, 0.5]  # the next 1.0 would pass 1.2
        assert len(rec.requests) == 3

    def test_retry_after_beyond_deadline_gives_up_at_once(self) -> None:
        """A Retry-After longer than the remaining budget ends the retries immediately."""
        policy = dataclasses.replace(RetryPolicy.no_wait(), timeout=5.0)
        client, rec, events = make(httpx.Response(429, headers={"Retry-After": "10"}), retry=policy)
        with pytest.raises(RateLimited):
            client.list_tokens("svc_app")
        assert (len(rec.requests), events) == (1, [])

    def test_backoff_is_capped_by_wait_max(self) -> None:
        """Backoff grows exponentially but never beyond wait_max."""
        policy = RetryPolicy(wait_initial=1, wait_max=3, wait_jitter=0)
        assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 3, 3]

    def test_real_policy_sleeps_the_reported_wait(self) -> None:
        """The policy's sleep receives exactly the waits reported to on_retry."""
        slept: list[float] = []
        policy = RetryPolicy(sleep=slept.append, wait_jitter=0)
        client, _, events = make(httpx.Response(503), ok({"tokens": []}), retry=policy)
        client.list_tokens("svc_app")
        assert slept == [e.wait_seconds for e in events] == [0.25]

    def test_retry_is_logged(self) -> None:
        """Each scheduled retry is logged as motherduck.retry_scheduled with the event fields."""
        client, _, _ = make(httpx.Response(429, headers={"Retry-After": "1"}), ok({}))
        with structlog.testing.capture_logs() as logs:
            client.revoke_token("svc_app", "t")
        assert logs == [
            {
                "event": "motherduck.retry_scheduled",
                "log_level": "warning",
                "method": "DELETE",
                "route": "/v1/users/{username}/tokens/{token_id}",
                "attempt": 1,
                "wait_seconds": 1.0,
                "reason": "429",
            }
        ]

    def test_invalid_policy_is_refused(self) -> None:
        """A policy without attempts or budget is a bug, refused at construction."""
        with pytest.raises(ValueError):
            RetryPolicy(attempts=0)
        with pytest.raises(ValueError):
            RetryPolicy(timeout=0)


class TestMalformedSuccess:
    @pytest.mark.parametrize(
        "body",
        [
            {"tokens": "nope"},
            {"nothing": []},
            {"tokens": [{"name": "no id"}]},
            {"tokens": [{"id": "a", "created_ts": "yesterday"}]},
            {"tokens": [{"id": "a", "read_only": "yes"}]},
            [1, 2],
        ],
    )
    def test_malformed_list_names_the_endpoint(self, body: Any) -> None:
        """A 200 whose body lacks the documented shape raises MotherDuckError naming it."""
        client, _, _ = make(ok(body))
        with pytest.raises(MotherDuckError, match=r"^GET /v1/users/svc_app/tokens: 200 "):
            client.list_tokens("svc_app")

    def test_non_json_success_on_get(self) -> None:
        """A 200 that is not JSON raises MotherDuckError, not a JSON exception."""
        client, _, _ = make(httpx.Response(200, text="<html>"))
        with pytest.raises(MotherDuckError, match="not JSON"):
            client.active_accounts()


class TestSecrecyAndLifecycle:
    def test_admin_token_never_in_reprs(self) -> None:
        """Neither the client nor the policy shows the admin token."""
        client, _, _ = make(ok({}))
        assert ADMIN not in repr(client)
        assert ADMIN not in repr(client.__dict__)

    def test_owned_transport_is_closed_injected_one_is_not(self) -> None:
        """close() closes the transport we made, never one we were given; a closed client
        refuses to send."""
        closed: list[str] = []

        class Injected(httpx.MockTransport):
            def close(self) -> None:
                closed.append("injected")

        with MotherDuckClient(URL, Secret(ADMIN), transport=Injected(lambda r: ok({}))):
            pass
        assert closed == []
        own = MotherDuckClient(URL, Secret(ADMIN))
        with own:
            pass
        with pytest.raises(RuntimeError, match="closed"):
            own.list_tokens("svc_a")
