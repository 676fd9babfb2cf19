"""The MotherDuck REST client: typed results, typed errors, bounded retries.

It owns the REST semantics of `spec/motherduck-rest-api.md` (paths, JSON, status
mapping, retry policy) over one httpx transport, which does one hop. Requests go to the
transport directly, not through an `httpx.Client` (`_request` builds what the client
would): its layers (auth, redirects, cookies, URL and header merging) do nothing for a
bearer-token API that answers without redirects or cookies, and cost about a quarter of
each request's CPU. Every call has a timeout; the admin token is revealed only to build
the `Authorization` header. Errors are `rotator.errors.MotherDuckError` subclasses with
one-line messages naming the method, the path (username, token id) and what to do; never
a secret.

Retries (the policy is `rotator.motherduck.retry`, the classification of a failed attempt
`rotator.motherduck.failure`), bounded by `RetryPolicy.attempts` AND `RetryPolicy.timeout`:

    429                            every method; waits Retry-After (capped) if given
    502, 503, 504                  GET, PUT, DELETE
    transport errors               GET, PUT, DELETE
    connect errors (never sent)    every method
    token-creating POST            after a read timeout, a dropped connection or any 5xx:
                                   never retried, raises OutcomeUnknown(token_name=...),
                                   with in_flight=True when no answer came back at all
                                   (timeout, dropped connection, gateway 502/504)

Every attempt has a wall-clock deadline (its timeout: a server dripping bytes cannot
stretch it) and a size cap on the answer (`rotator.util.httpbound`); an answer that is too big,
not JSON, nested too deeply or missing fields is a one-line MotherDuckError (on a
token-creating POST, OutcomeUnknown).

A retried DELETE of a token that did go through answers 404, which `revoke_token`
reports as "already gone" (False).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import structlog

from rotator.errors import ConfigError, MotherDuckError, NotFound
from rotator.motherduck import parse as answers
from rotator.motherduck.failure import Classifier, Failure, unknown
from rotator.motherduck.parse import CreatedToken, TokenInfo
from rotator.motherduck.request import (
    ACTIVE_ACCOUNTS,
    INSTANCES,
    MAX_BODY_BYTES,
    MIN_ATTEMPT_SECONDS,
    TOKEN,
    TOKENS,
    USER,
    USERS,
    check_admin_token,
    route_path,
)
from rotator.motherduck.retry import EVENT_KEYS, RetryEvent, RetryPolicy
from rotator.netpolicy import insecure_reason
from rotator.secret import Secret
from rotator.util.httpbound import DeadlineTransport, TooLarge, deadline, read_capped

if TYPE_CHECKING:
    import ssl

    from rotator.motherduck.slots import CallSlots  # a fleet's; one account needs none

__all__ = ["CreatedToken", "MotherDuckClient", "RetryEvent", "RetryPolicy", "TokenInfo"]

log = structlog.get_logger("rotator.motherduck")

_T = TypeVar("_T")


class MotherDuckClient:
    """Calls the MotherDuck REST API as an organization admin."""

    def __init__(
        self,
        api_url: str,
        admin_token: Secret,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        warn_insecure: bool = True,
    ) -> None:
        """`warn_insecure=False`: another client of the same run has already logged
        `motherduck.insecure_url` for this URL (the Lambda's pair)."""
        try:
            url = httpx.URL(api_url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"motherduck api_url is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError("motherduck api_url must be an http(s) URL with a host")
        check_admin_token(admin_token)
        self._base = api_url.rstrip("/")
        self._shown_url = str(url.copy_with(username=None, password=None, query=None))
        why = insecure_reason(api_url) if warn_insecure else None
        if why:  # accepted by the config only with `insecure = true`; said on every run
            log.warning("motherduck.insecure_url", url=self._shown_url, why=why)
        self._admin_token = admin_token
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._classify = Classifier(self._shown_url, admin_token, self._retry)
        self._owns_transport = transport is None
        self._transport = _TransportPerThread() if transport is None else transport
        self._closed = False
        self._slots: CallSlots | _Unlimited = _UNLIMITED

    def limit_calls(self, slots: CallSlots) -> None:
        """Share `slots` (a fleet's `--concurrency`): each attempt of a call holds one."""
        self._slots = slots

    def __repr__(self) -> str:
        return f"MotherDuckClient({self._shown_url!r})"

    def close(self) -> None:
        """Close the transport if we made it; an injected one is the caller's."""
        self._closed = True
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> MotherDuckClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- tokens ----------------------------------------------------------------------

    def create_token(
        self,
        username: str,
        name: str,
        *,
        ttl_seconds: int | None = None,
        token_type: str = "read_write",
    ) -> CreatedToken:
        """Mint a token. Not idempotent: never retried once the server may have acted.

        Raises OutcomeUnknown (carrying `username` and `token_name`) when the answer was
        lost: a timeout after sending, a dropped connection, any 5xx or a garbled body.
        The caller then lists tokens by name to learn whether it exists.
        """
        body: dict[str, Any] = {"name": name, "token_type": token_type}
        if ttl_seconds is not None:
            body["ttl"] = ttl_seconds
        creating = (username, name)
        return self._call(
            "POST", TOKENS, answers.created, json=body, creating=creating, username=username
        )

    def list_tokens(self, username: str) -> list[TokenInfo]:
        """Every live token of `username` (metadata only). Safe to repeat."""
        return self._call("GET", TOKENS, answers.token_list, username=username)

    def find_tokens_by_name(self, username: str, name: str) -> list[TokenInfo]:
        """The live tokens of `username` whose name is exactly `name`."""
        return [token for token in self.list_tokens(username) if token.name == name]

    def revoke_token(self, username: str, token_id: str) -> bool:
        """Revoke a token by id: True if revoked now, False if it was already gone.

        "Gone" is the API's JSON NOT_FOUND, which also covers a deleted user. Safe to repeat;
        a plain-text 404 (wrong api_url) raises WrongRoute, never False.
        """
        try:
            return self._call("DELETE", TOKEN, answers.true, username=username, token_id=token_id)
        except NotFound:
            return False

    # -- accounts and ducklings ------------------------------------------------------

    def create_service_account(self, username: str) -> str:
        """Create a service account; returns the username as stored. Not retried on 5xx."""
        return self._call("POST", USERS, answers.username, json={"username": username})

    def delete_user(self, username: str) -> str:
        """Delete an account with its tokens and data; returns the deleted username."""
        deleted = self._call("DELETE", USER, answers.optional_username, username=username)
        return deleted or username

    def get_duckling_config(self, username: str) -> dict[str, Any]:
        """The account's Duckling configuration, as the API returns it."""
        return self._call("GET", INSTANCES, answers.object_, username=username)

    def put_duckling_config(self, username: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the Duckling configuration; returns the normalized result."""
        body = {"config": dict(config)}
        return self._call("PUT", INSTANCES, answers.object_, json=body, username=username)

    def active_accounts(self, *, on_sent: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        """Accounts with running Ducklings; also a cheap probe that the token is an admin's.

        `on_sent` is called once a request has gone out (each attempt's), before its answer
        is awaited: a caller in another thread can then know the probe was sent first.
        """
        return self._call("GET", ACTIVE_ACCOUNTS, answers.accounts, on_sent=on_sent)

    # -- one call: request, retries, status mapping, parsing ---------------------------

    def _call(
        self,
        method: str,
        route: str,
        parse: Callable[[Any], _T],
        *,
        json: Any = None,
        creating: tuple[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
        **segments: str,
    ) -> _T:
        path = route_path(route, **segments)
        policy = self._retry
        start = policy.clock()
        attempt = 0
        while True:
            attempt += 1
            failure: Failure | None = None
            # A slot for the attempt only (not the wait before a retry), waited for within
            # the call's budget: see rotator.motherduck.slots.
            with self._slots.slot(policy.timeout - (policy.clock() - start)):
                timeout = self._attempt_timeout(policy.timeout - (policy.clock() - start))
                try:
                    response, body = self._send(method, path, json, timeout, on_sent)
                except httpx.TransportError as exc:
                    failure = self._classify.transport_failure(method, path, exc, creating)
                except TooLarge as exc:
                    failure = self._classify.too_large(method, path, exc, creating)
                else:
                    if not response.is_success:
                        failure = self._classify.status_failure(
                            method, path, response, body, creating
                        )
            if failure is None:
                return self._parse(method, path, body, parse, creating)
            if not (failure.retry and self._schedule(method, route, attempt, failure, start)):
                raise failure.error(attempt) from failure.cause

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        timeout: float | httpx.Timeout,
        on_sent: Callable[[], None] | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """One attempt: the answer and its body, read within a deadline and a size cap."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        request = self._request(method, path, json, timeout, on_sent)
        with deadline(_seconds(timeout)):
            response = self._transport.handle_request(request)
            response.request = request
            try:
                return response, read_capped(response, MAX_BODY_BYTES)
            finally:
                response.close()

    def _request(
        self,
        method: str,
        path: str,
        json: Any,
        timeout: float | httpx.Timeout,
        on_sent: Callable[[], None] | None,
    ) -> httpx.Request:
        """The request an `httpx.Client` would build for this call, built directly.

        The same headers as httpx's defaults plus ours, in the same order, and the same
        JSON body; no cookies are kept or sent.
        """
        url = _parsed(self._base + path)
        extensions: dict[str, Any] = {"timeout": httpx.Timeout(timeout).as_dict()}
        if on_sent is not None:
            extensions["trace"] = _when_sent(on_sent)
        headers = {
            **_HEADERS,
            "Authorization": f"Bearer {self._admin_token.reveal()}",
            "Accept-Encoding": "identity",  # the size cap counts what the server sent
        }
        return httpx.Request(method, url, json=json, headers=headers, extensions=extensions)

    def _attempt_timeout(self, remaining: float) -> float | httpx.Timeout:
        if isinstance(self._timeout, httpx.Timeout):
            return self._timeout
        return min(self._timeout, max(remaining, MIN_ATTEMPT_SECONDS))

    def _schedule(
        self, method: str, route: str, attempt: int, failure: Failure, start: float
    ) -> bool:
        policy = self._retry
        wait = policy.next_wait(attempt, failure.wait, start)
        if wait is None:
            return False
        event = RetryEvent(method, route, attempt, wait, failure.reason)
        log.warning("motherduck.retry_scheduled", **{k: getattr(event, k) for k in EVENT_KEYS})
        if self._on_retry is not None:
            self._on_retry(event)
        policy.sleep(wait)
        return True

    def _parse(
        self,
        method: str,
        path: str,
        body: bytes,
        parse: Callable[[Any], _T],
        creating: tuple[str, str] | None,
    ) -> _T:
        try:
            if not body.strip():
                return parse({})  # tolerate an empty 200 where the spec promises `{}`
            return parse(answers.load_json(body))
        except (answers.Malformed, RecursionError) as exc:
            what = f"200 with an unexpected body ({exc or type(exc).__name__})"
            if creating is not None:
                raise unknown(method, path, what, creating).error(1) from None
            raise MotherDuckError(f"{method} {path}: {what}", status=200) from None


# -- helpers ---------------------------------------------------------------------------


class _Unlimited:
    """No limit (one account, the Lambda, the read-only commands): no lock taken."""

    @contextlib.contextmanager
    def slot(self, wait: float) -> Iterator[None]:
        yield


_UNLIMITED: CallSlots | _Unlimited = _Unlimited()


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> httpx.URL:
    """A URL parsed once while it is in use: a rotation calls its account's tokens path four
    times. Bounded, as each revoke's path is new (httpx.URL is immutable: safe to share)."""
    return httpx.URL(url)


# What an httpx.Client sends by default, in its order; `_request` adds the rest.
_HEADERS: Mapping[str, str] = {
    "Accept": "*/*",
    "Connection": "keep-alive",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}


class _TransportPerThread(httpx.BaseTransport):
    """A DeadlineTransport per calling thread and URL scheme, made at that thread's first
    request of that scheme.

    Why per thread: httpcore's pool, on every request and every response close, walks all
    the connections it holds (polling each idle one) under one lock. A fleet shares a
    client among 16-32 threads, so one pool held as many connections and that walk was
    about a tenth of the fleet's CPU; a thread's own pool holds the one connection it
    uses. A thread's first request of a scheme takes over the transport (and its idle
    connection) of a thread that has ended, if there is one, and closes those of the other
    ended threads, so a client that lives on (new threads per run) holds only live threads'
    transports and a thread after another one reuses its connection.

    Why made on first use: a verifying TLS context (loading the CA bundle: ~40 ms of a
    Lambda cold start) is then built when the first https request needs it, not with the
    client; an http-only client (a loopback simulator) never builds one. It is built once
    per client and scheme and shared by every thread's transport (an `SSLContext` is safe
    to share), so 32 threads do not load the CA bundle 32 times. The plain-http transports
    get a TLS context that trusts nothing, so that if one ever were asked for TLS it would
    fail closed; https always goes to a transport with the default, verifying context.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._every: dict[tuple[threading.Thread, str], httpx.BaseTransport] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        mine: dict[str, httpx.BaseTransport] | None = getattr(self._local, "by_scheme", None)
        if mine is None:
            mine = self._local.by_scheme = {}
        transport = mine.get(scheme)
        if transport is None:
            transport = mine[scheme] = self._new(scheme)
        return transport.handle_request(request)

    def _new(self, scheme: str) -> httpx.BaseTransport:
        with self._lock:  # the first thread builds the context; the others wait for it
            context = self._contexts.get(scheme)
            if context is None:
                context = self._contexts[scheme] = _context_for(scheme)
            ended = [key for key in self._every if not key[0].is_alive()]
            stale = [(key[1], self._every.pop(key)) for key in ended]
            # An ended thread's transport of this scheme is taken over, with its idle
            # connection (the admin probe's thread, then the rotation's); the rest closed.
            heir = next((old for kind, old in stale if kind == scheme), None)
            if heir is None:
                heir = _transport_for(scheme, context)
            self._every[(threading.current_thread(), scheme)] = heir
        for _, old in stale:
            if old is not heir:
                old.close()
        return heir

    def close(self) -> None:
        with self._lock:
            transports, self._every = list(self._every.values()), {}
        for transport in transports:
            transport.close()


def _context_for(scheme: str) -> ssl.SSLContext:
    if scheme != "http":
        return httpx.create_ssl_context()  # httpx's default: certifi, or SSL_CERT_FILE/DIR
    import ssl  # ssl itself loads lazily too, as in httpx

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts no CA


def _transport_for(scheme: str, context: ssl.SSLContext) -> httpx.BaseTransport:
    return DeadlineTransport(verify=context)


def _when_sent(on_sent: Callable[[], None]) -> Callable[[str, dict[str, Any]], None]:
    """An httpcore `trace` extension that calls `on_sent` once the request body went out."""

    def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):
            on_sent()

    return trace


def _seconds(timeout: float | httpx.Timeout) -> float:
    """An attempt's wall-clock deadline: its timeout, or the longest part of an httpx.Timeout."""
    if isinstance(timeout, httpx.Timeout):
        parts = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t]
        return max(parts, default=60.0)
    return timeout
