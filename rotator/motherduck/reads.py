"""The MotherDuck API's read-only calls over urllib3: what a Lambda's scheduled pass asks.

A scheduled pass with nothing due makes only GETs (the admin-token probe, one token
listing per account for its metrics). botocore has imported urllib3 by then (the state
store is DynamoDB), while httpx would be ~25 ms of a cold start; `ReadClient` makes those
GETs over urllib3 instead, under the same rules as `MotherDuckClient`:

* the same paths, headers and answers (`rotator.motherduck.parse`), the same
  classification of a failed attempt and the same one-line, secret-free errors
  (`rotator.motherduck.failure.Classifier`), the same retries and their
  `motherduck.retry_scheduled` log line (`rotator.motherduck.retry.RetryPolicy`);
* each attempt has a wall-clock deadline: once connected, every socket read and write is
  cut to what is left of it (`_DeadlineSocket`), so a server dripping bytes cannot stretch
  an attempt; connecting (and a TLS handshake) is bounded by the attempt's timeout;
* the same size cap on an answer (MAX_BODY_BYTES), no redirects followed, no cookies, no
  proxy, and TLS verified against the same CA bundle httpx uses (certifi, or
  SSL_CERT_FILE / SSL_CERT_DIR), built at the first https request.

Anything that is not a plain GET (token creation, revocation, `on_sent` probes) belongs to
`MotherDuckClient`; `rotator.aws_lambda.mdclient` puts the two together. urllib3 itself is
imported at the first request, never with this module.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import structlog

from rotator.errors import ConfigError, MotherDuckError
from rotator.motherduck import parse as answers
from rotator.motherduck.failure import Classifier, Failure
from rotator.motherduck.parse import TokenInfo
from rotator.motherduck.request import (
    ACTIVE_ACCOUNTS,
    MAX_BODY_BYTES,
    MIN_ATTEMPT_SECONDS,
    TOKENS,
    check_admin_token,
    route_path,
)
from rotator.motherduck.retry import EVENT_KEYS, RetryEvent, RetryPolicy
from rotator.netpolicy import insecure_reason
from rotator.secret import Secret
from rotator.util.attempt import TooLarge, capped, deadline, left

if TYPE_CHECKING:
    import socket
    import ssl

    import urllib3

__all__ = ["ReadClient"]

log = structlog.get_logger("rotator.motherduck")

POOL_SIZE: Final = 8
"""Connections kept per host: a pass lists up to 8 accounts' tokens at once."""
_CHUNK: Final = 64 * 1024
_T = TypeVar("_T")
class ReadClient:
    """GETs of the MotherDuck REST API as an organization admin, over urllib3."""

    def __init__(
        self,
        api_url: str,
        admin_token: Secret,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        try:
            parts = urlsplit(api_url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"motherduck api_url is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("motherduck api_url must be an http(s) URL with a host")
        check_admin_token(admin_token)
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        self._shown_url = f"{parts.scheme}://{netloc}{'' if port is None else f':{port}'}"
        self._shown_url += parts.path
        why = insecure_reason(api_url)
        if why:  # accepted by the config only with `insecure = true`; said on every run
            log.warning("motherduck.insecure_url", url=self._shown_url, why=why)
        self._admin_token = admin_token
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._classify = Classifier(self._shown_url, admin_token, self._retry)
        self._pool: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReadClient({self._shown_url!r})"

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> ReadClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the calls (as MotherDuckClient's) ----------------------------------------------

    def list_tokens(self, username: str) -> list[TokenInfo]:
        """Every live token of `username` (metadata only). Safe to repeat."""
        return self._call(TOKENS, answers.token_list, username=username)

    def find_tokens_by_name(self, username: str, name: str) -> list[TokenInfo]:
        """The live tokens of `username` whose name is exactly `name`."""
        return [token for token in self.list_tokens(username) if token.name == name]

    def active_accounts(self) -> list[dict[str, Any]]:
        """Accounts with running Ducklings; also a cheap probe that the token is an admin's."""
        return self._call(ACTIVE_ACCOUNTS, answers.accounts)

    # -- one call: request, retries, status mapping, parsing ---------------------------

    def _call(self, route: str, parse: Callable[[Any], _T], **segments: str) -> _T:
        path = route_path(route, **segments)
        policy = self._retry
        start = policy.clock()
        attempt = 0
        while True:
            attempt += 1
            remaining = policy.timeout - (policy.clock() - start)
            timeout = min(self._timeout, max(remaining, MIN_ATTEMPT_SECONDS))
            failure = self._attempt(path, timeout)
            if isinstance(failure, bytes):
                return self._parse(path, failure, parse)
            if not (failure.retry and self._schedule(route, attempt, failure, start)):
                raise failure.error(attempt) from failure.cause

    def _attempt(self, path: str, timeout: float) -> bytes | Failure:
        """One GET: the body of a 2xx answer, else the classified Failure."""
        import urllib3

        try:
            status, answer, body = self._send(path, timeout)
        except TooLarge as exc:
            return self._classify.too_large("GET", path, exc, None)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason, never_sent, not_transient = _what_failed(exc)
            return self._classify.no_answer(
                "GET", path, exc, reason, None, never_sent=never_sent, not_transient=not_transient
            )
        if 200 <= status < 300:
            return body
        return self._classify.status_failure("GET", path, answer, body, None)

    def _send(self, path: str, timeout: float) -> tuple[int, _Answer, bytes]:
        import urllib3

        pool = self._connections()
        with deadline(timeout):
            response = pool.urlopen(
                "GET",
                self._prefix + path,
                headers={
                    "Authorization": f"Bearer {self._admin_token.reveal()}",
                    "Accept": "*/*",
                    "Accept-Encoding": "identity",  # the size cap counts what the server sent
                },
                retries=False,  # ours are the policy's, not urllib3's
                redirect=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout, total=timeout),
                preload_content=False,
            )
            try:
                body = capped(response.stream(_CHUNK, decode_content=True), MAX_BODY_BYTES)
            except BaseException:
                response.close()  # a half-read connection is not reused
                raise
            finally:
                response.release_conn()
        return response.status, _Answer(response), body

    def _connections(self) -> urllib3.HTTPConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = _pool(self._scheme, self._host, self._port)
            return self._pool  # type: ignore[no-any-return]

    def _schedule(self, route: str, attempt: int, failure: Failure, start: float) -> bool:
        wait = self._retry.next_wait(attempt, failure.wait, start)
        if wait is None:
            return False
        event = RetryEvent("GET", route, attempt, wait, failure.reason)
        log.warning("motherduck.retry_scheduled", **{k: getattr(event, k) for k in EVENT_KEYS})
        if self._on_retry is not None:
            self._on_retry(event)
        self._retry.sleep(wait)
        return True

    def _parse(self, path: str, body: bytes, parse: Callable[[Any], _T]) -> _T:
        try:
            if not body.strip():
                return parse({})  # tolerate an empty 200 where the spec promises `{}`
            return parse(answers.load_json(body))
        except (answers.Malformed, RecursionError) as exc:
            what = f"200 with an unexpected body ({exc or type(exc).__name__})"
            raise MotherDuckError(f"GET {path}: {what}", status=200) from None


class _Answer:
    """An error answer as the Classifier reads it (the shape of an httpx.Response)."""

    __slots__ = ("headers", "reason_phrase", "status_code")

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self.status_code: int = response.status
        self.reason_phrase: str = response.reason or ""
        self.headers: Any = response.headers  # case-insensitive, as httpx's


def _what_failed(exc: BaseException) -> tuple[str, bool, bool]:
    """(reason, never sent, not transient) of a failed attempt, in httpx's names so that
    messages and retry events read the same whichever client made the call."""
    from urllib3 import exceptions as e

    if isinstance(exc, (e.NewConnectionError, e.SSLError)):  # NewConnectionError first:
        return "ConnectError", True, False  # urllib3 2 makes it a ConnectTimeoutError too
    if isinstance(exc, e.ConnectTimeoutError):
        return "ConnectTimeout", True, False
    if isinstance(exc, (e.LocationValueError, e.URLSchemeUnknown)):
        return "UnsupportedProtocol", False, True
    if isinstance(exc, (e.ReadTimeoutError, TimeoutError)):
        return "ReadTimeout", False, False
    if isinstance(exc, e.ProtocolError):
        return "RemoteProtocolError", False, False
    return "ReadError", False, False


class _DeadlineSocket:
    """A connected socket whose every read and write ends by the attempt's deadline.

    urllib3 (and http.client under it) set one timeout per socket operation; reading a
    status line, headers and body is many operations. This wrapper cuts each one to what
    is left of the attempt, as `rotator.util.httpbound.DeadlineTransport` does for httpx.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._sock.settimeout(left(self._timeout))
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._sock.settimeout(left(self._timeout))
        return self._sock.recv(bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._sock.settimeout(left(self._timeout))
        self._sock.sendall(data, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._sock.settimeout(left(self._timeout))
        return self._sock.send(data, flags)

    def makefile(self, mode: str = "r", buffering: int | None = None, **_: Any) -> Any:
        """A binary file reading through this wrapper (http.client reads answers so)."""
        import io
        import socket

        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type]
        return io.BufferedReader(raw, buffering or io.DEFAULT_BUFFER_SIZE)

    def __getattr__(self, name: str) -> Any:  # fileno, close, shutdown, version, ...
        return getattr(self._sock, name)


def _pool(scheme: str, host: str, port: int | None) -> urllib3.HTTPConnectionPool:
    import urllib3
    from urllib3 import connection

    # The names urllib3's messages show ("HTTPConnection(host=..., port=...): Failed to ...").
    class HTTPConnection(connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            self.sock = _DeadlineSocket(self.sock)

    class HTTPSConnection(connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            self.sock = _DeadlineSocket(self.sock)

    kwargs: dict[str, Any] = {"maxsize": POOL_SIZE, "block": False, "retries": False}
    if scheme == "http":
        pool = urllib3.HTTPConnectionPool(host, port, **kwargs)
        pool.ConnectionCls = HTTPConnection
        return pool
    pool = urllib3.HTTPSConnectionPool(host, port, ssl_context=_verifying_context(), **kwargs)
    pool.ConnectionCls = HTTPSConnection
    return pool


def _verifying_context() -> ssl.SSLContext:
    """The CA bundle httpx trusts (`httpx.create_ssl_context()`), without importing httpx."""
    import ssl

    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
