"""ReadClient (urllib3) against the simulator over real HTTP: the same answers, errors,
retries and bounds as MotherDuckClient (httpx) for every read the Lambda makes.

Each scenario runs once with each client and compares what they return or raise (type,
message, the retries they scheduled): the Lambda's reads must be indistinguishable from
the command line's. Faults come from the simulator's fault injection; answers no
MotherDuck would give (HTML, JSON nested 100,000 deep, an endless body, a slowloris)
from a small hostile server on loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import structlog

from rotator.aws_lambda.mdclient import LambdaClient
from rotator.errors import (
    ConfigError,
    Forbidden,
    MotherDuckError,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    WrongRoute,
)
from rotator.motherduck.client import MotherDuckClient
from rotator.motherduck.reads import ReadClient
from rotator.motherduck.retry import RetryEvent, RetryPolicy
from rotator.secret import Secret
from tests.support.procs import free_port
from tests.support.simulator_fixtures import SimulatorHandle, unique_username

KINDS = ("httpx", "urllib3")
BOUND_SECONDS = 60  # a read against a hostile server that has not ended by then failed
HOSTILE_RUN_SECONDS = 30  # a hostile answer gives up on its own after this


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def policy(attempts: int = 4) -> RetryPolicy:
    """Real waits computed (no jitter, so both clients' are equal), none slept."""
    return dataclasses.replace(RetryPolicy.no_wait(attempts), wait_jitter=0)


def make(
    kind: str, url: str, token: str, events: list[RetryEvent] | None = None, **kw: Any
) -> MotherDuckClient | ReadClient:
    kw.setdefault("retry", policy())
    on_retry = None if events is None else events.append
    if kind == "httpx":
        return MotherDuckClient(url, Secret(token), on_retry=on_retry, **kw)
    return ReadClient(url, Secret(token), on_retry=on_retry, **kw)


def outcome(
    kind: str, url: str, token: str, call: Callable[[Any], Any], **kw: Any
) -> tuple[Any, list[tuple[str, str, int, float, str]]]:
    """(the value returned or the exception raised, the retries scheduled) of one read."""
    events: list[RetryEvent] = []
    with make(kind, url, token, events, **kw) as client:
        try:
            result: Any = call(client)
        except MotherDuckError as exc:
            result = exc
    return result, [dataclasses.astuple(e) for e in events]


def same_error(
    results: dict[str, tuple[Any, list[Any]]], kind: type[MotherDuckError], *secrets: str
) -> None:
    """Both clients raised `kind` with the same message and scheduled the same retries."""
    (httpx_error, httpx_retries), (urllib3_error, urllib3_retries) = (
        results["httpx"],
        results["urllib3"],
    )
    assert type(httpx_error) is type(urllib3_error) is kind, results
    assert str(urllib3_error) == str(httpx_error)
    assert urllib3_retries == httpx_retries
    for error in (httpx_error, urllib3_error):
        for secret in secrets:
            assert secret not in str(error) and secret not in repr(error)


def both(url: str, token: str, call: Callable[[Any], Any], **kw: Any) -> dict[str, Any]:
    return {kind: outcome(kind, url, token, call, **kw) for kind in KINDS}


@pytest.fixture
def account(simulator: SimulatorHandle) -> str:
    user = unique_username()
    simulator.seed(user, token_name="initial")
    simulator.seed(user, token_name="with-ttl", ttl=3600)
    simulator.seed(user, token_name="scaling", token_type="read_scaling")
    return user


class TestAnswers:
    def test_listings_are_the_same(self, simulator: SimulatorHandle, account: str) -> None:
        """Token listings (every field), a lookup by name and active accounts agree."""
        for call in (
            lambda c: c.list_tokens(account),
            lambda c: c.find_tokens_by_name(account, "with-ttl"),
            lambda c: c.active_accounts(),
        ):
            results = both(simulator.url, simulator.admin_token, call)
            assert results["urllib3"] == results["httpx"]
            assert results["urllib3"][1] == []  # no retries
        listed, _ = results_of(simulator, lambda c: c.list_tokens(account))
        assert {t.id for t in listed} == simulator.live_token_ids(account)
        assert {t.name for t in listed} == {"initial", "with-ttl", "scaling"}

    def test_connections_are_reused(self, simulator: SimulatorHandle, account: str) -> None:
        """Several reads, from several threads at once, all answered on a pooled client."""
        with ReadClient(simulator.url, Secret(simulator.admin_token)) as client:
            expected = client.list_tokens(account)
            threads = [
                threading.Thread(target=lambda: client.list_tokens(account)) for _ in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(BOUND_SECONDS)
            assert client.list_tokens(account) == expected


def results_of(simulator: SimulatorHandle, call: Callable[[Any], Any]) -> Any:
    return outcome("urllib3", simulator.url, simulator.admin_token, call)


class TestErrors:
    def test_bad_admin_token(self, simulator: SimulatorHandle) -> None:
        bad = "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.not-a-real-signature"
        results = both(simulator.url, bad, lambda c: c.active_accounts())
        same_error(results, Unauthorized, bad)
        assert "admin token was rejected" in str(results["urllib3"][0])

    def test_non_admin_token(self, simulator: SimulatorHandle, account: str) -> None:
        secret, _ = simulator.seed(account, token_name="not-admin")
        other = unique_username()
        results = both(simulator.url, secret, lambda c: c.list_tokens(other))
        same_error(results, Forbidden, secret, simulator.admin_token)

    def test_unknown_user_and_wrong_route(self, simulator: SimulatorHandle) -> None:
        user = unique_username()
        same_error(
            both(simulator.url, simulator.admin_token, lambda c: c.list_tokens(user)), NotFound
        )
        same_error(
            both(simulator.url + "/api", simulator.admin_token, lambda c: c.list_tokens(user)),
            WrongRoute,
            simulator.admin_token,
        )

    def test_nothing_listening(self) -> None:
        """Connection refused: retried (never sent), then TransportError naming ConnectError."""
        results = both(
            f"http://127.0.0.1:{free_port()}",
            "eyJh.eyJi.c",
            lambda c: c.list_tokens("svc_x"),
            retry=policy(attempts=2),
        )
        assert type(results["urllib3"][0]) is TransportError
        assert "(ConnectError: " in str(results["urllib3"][0])
        assert [e[4] for e in results["urllib3"][1]] == ["ConnectError"]
        assert results["urllib3"][1] == results["httpx"][1]

    def test_invalid_url_and_token_refused_alike(self, simulator: SimulatorHandle) -> None:
        for url, token in (("ftp://example.com", "t"), (simulator.url, "two\nlines")):
            errors = []
            for kind in KINDS:
                with pytest.raises(ConfigError) as info:
                    make(kind, url, token)
                errors.append(str(info.value))
            assert errors[0] == errors[1]
            assert "lines" not in errors[0]


class TestFaults:
    def test_429_with_retry_after(self, simulator: SimulatorHandle, account: str) -> None:
        """Two 429s: both clients wait exactly Retry-After, then answer."""
        results = {}
        for kind in KINDS:
            simulator.add_fault(
                route="list_tokens", action="error", status=429, retry_after=0.2, times=2
            )
            results[kind] = outcome(
                kind, simulator.url, simulator.admin_token, lambda c: c.list_tokens(account)
            )
        assert results["urllib3"] == results["httpx"]
        assert [e[3] for e in results["urllib3"][1]] == [0.2, 0.2]

    def test_429_exhausted(self, simulator: SimulatorHandle, account: str) -> None:
        simulator.add_fault(route="list_tokens", action="error", status=429, retry_after=0.1)
        results = both(simulator.url, simulator.admin_token, lambda c: c.list_tokens(account))
        same_error(results, RateLimited)
        assert results["urllib3"][0].retry_after == 0.1
        statuses = [r["status"] for r in simulator.requests() if r["route"] == "list_tokens"]
        assert statuses == [429] * 8  # four attempts each

    @pytest.mark.parametrize("status", [502, 503, 504])
    def test_gateway_errors_retried(
        self, simulator: SimulatorHandle, account: str, status: int
    ) -> None:
        results = {}
        for kind in KINDS:
            simulator.add_fault(route="active_accounts", action="error", status=status, times=1)
            results[kind] = outcome(
                kind, simulator.url, simulator.admin_token, lambda c: c.active_accounts()
            )
        assert results["urllib3"] == results["httpx"]
        assert [e[4] for e in results["urllib3"][1]] == [str(status)]

    def test_server_error_not_retried(self, simulator: SimulatorHandle, account: str) -> None:
        simulator.add_fault(route="list_tokens", action="error", status=500)
        results = both(simulator.url, simulator.admin_token, lambda c: c.list_tokens(account))
        same_error(results, ServerError, simulator.admin_token)
        assert results["urllib3"][1] == []

    @pytest.mark.parametrize("action", ["drop_before_commit", "drop_after_commit"])
    def test_dropped_connection_retried(
        self, simulator: SimulatorHandle, account: str, action: str
    ) -> None:
        """The server closes the connection without a byte: a GET is tried again."""
        results = {}
        for kind in KINDS:
            simulator.add_fault(route="list_tokens", action=action, times=1)
            results[kind] = outcome(
                kind, simulator.url, simulator.admin_token, lambda c: c.list_tokens(account)
            )
        assert results["urllib3"][0] == results["httpx"][0]
        assert [e[4] for e in results["urllib3"][1]] == [e[4] for e in results["httpx"][1]]
        assert len(results["urllib3"][1]) == 1

    def test_slow_answer_times_out(self, simulator: SimulatorHandle, account: str) -> None:
        """An answer slower than the timeout: TransportError (ReadTimeout) for both."""
        simulator.add_fault(route="list_tokens", action="delay", seconds=1.5)
        results = both(
            simulator.url,
            simulator.admin_token,
            lambda c: c.list_tokens(account),
            timeout=0.5,
            retry=dataclasses.replace(policy(attempts=2), timeout=0.5),
        )
        for kind in KINDS:
            error = results[kind][0]
            assert type(error) is TransportError and "(ReadTimeout: " in str(error), kind
        assert results["urllib3"][1] == results["httpx"][1]


class Hostile(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.mode = "html"
        super().__init__(("127.0.0.1", 0), _Hostile)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Hostile(BaseHTTPRequestHandler):
    server: Hostile
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client gave up, as it should
            getattr(self, f"_{self.server.mode}")()

    def _reply(self, payload: bytes, ctype: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _html(self) -> None:
        self._reply(b"<html><body><h1>Down for maintenance</h1></body></html>", "text/html")

    def _deep_json(self) -> None:
        self._reply(b"[" * 100_000 + b"]" * 100_000)

    def _missing_fields(self) -> None:
        self._reply(b'{"tokens": [{"name": "no-id", "created_ts": "2026-01-01T00:00:00Z"}]}')

    def _empty(self) -> None:
        self._reply(b"")

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b'{"tokens": [' + b'{"id": "t", "name": "n"}, ' * 2600
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        stop = time.monotonic() + HOSTILE_RUN_SECONDS
        while time.monotonic() < stop:
            self.wfile.write(frame)

    def _slowloris(self) -> None:
        """A status line and headers one byte at a time: each read gets a byte in time."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n"
        stop = time.monotonic() + HOSTILE_RUN_SECONDS
        for byte in head + b"{}       ":
            if time.monotonic() > stop:
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.2)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def bounded(call: Callable[[], Any]) -> Any:
    """`call()` in a thread that must end within BOUND_SECONDS (else the test fails)."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(BOUND_SECONDS)
    assert not thread.is_alive(), "the read did not end within its bound"
    return box[0]


class TestHostileAnswers:
    @pytest.mark.parametrize("mode", ["html", "deep_json", "missing_fields", "endless"])
    def test_garbage_is_one_line_error(self, hostile: Hostile, mode: str) -> None:
        """A 200 that is not the documented JSON: the same one-line MotherDuckError."""
        hostile.mode = mode
        results = bounded(lambda: both(hostile.url, "eyJh.eyJi.c", lambda c: c.list_tokens("u")))
        same_error(results, MotherDuckError, "eyJh.eyJi.c")
        assert "\n" not in str(results["urllib3"][0])

    def test_empty_200_is_tolerated(self, hostile: Hostile) -> None:
        """An empty 200 reads as `{}`, as the httpx client reads it (here: no 'tokens')."""
        hostile.mode = "empty"
        results = bounded(lambda: both(hostile.url, "t", lambda c: c.list_tokens("u")))
        same_error(results, MotherDuckError)

    def test_slowloris_ends_by_the_deadline(self, hostile: Hostile) -> None:
        """A server dripping its answer byte by byte cannot stretch an attempt."""
        hostile.mode = "slowloris"
        quick = dataclasses.replace(policy(attempts=1), timeout=1.0)
        for kind in KINDS:
            error, _ = bounded(
                lambda kind=kind: outcome(
                    kind, hostile.url, "t", lambda c: c.list_tokens("u"), timeout=1.0, retry=quick
                )
            )
            assert type(error) is TransportError and "(ReadTimeout: " in str(error), kind


class TestLambdaClient:
    def test_reads_by_urllib3_writes_by_httpx(
        self, simulator: SimulatorHandle, account: str
    ) -> None:
        """Reads never build the httpx client; a write builds it once and lands."""
        with LambdaClient(simulator.url, Secret(simulator.admin_token), timeout=5.0) as client:
            before = client.list_tokens(account)
            client.active_accounts()
            assert client._full is None
            created = client.create_token(account, "from-lambda")
            assert isinstance(client._full, MotherDuckClient)
            assert created.info.id in {t.id for t in client.list_tokens(account)}
            assert len(client.list_tokens(account)) == len(before) + 1
            assert client.revoke_token(account, created.info.id) is True
            sent: list[bool] = []
            client.active_accounts(on_sent=lambda: sent.append(True))  # httpx's trace
            assert sent
