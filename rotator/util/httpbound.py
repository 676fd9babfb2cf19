"""HTTP answers with a size cap and a wall-clock deadline per attempt.

httpx's timeouts are per operation: a server that sends one byte every few seconds (a
slowloris) never trips a 5-second read timeout, and `response.read()` keeps whatever an
endless body sends. Every answer rotator reads from a server it does not control (the
MotherDuck API, a check's URL, a webhook) goes through this module instead:

    with deadline(seconds):                 # every connect, write and read of the attempt
        response = client.send(request, stream=True)   # is cut to the time left
        body = read_capped(response, limit)            # TooLarge past `limit` bytes

The deadline is enforced by `DeadlineTransport`, an `httpx.HTTPTransport` whose network
streams shrink each socket timeout to what is left of the attempt, so the attempt ends
with an httpx timeout by the deadline, whatever the server does. Where a caller injects
its own transport (tests' MockTransport), the size cap still applies.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from rotator.util.attempt import TooLarge, capped, deadline, left, remaining

__all__ = ["DeadlineTransport", "TooLarge", "deadline", "read_capped"]


def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read a streamed response's (decoded) body; raise TooLarge beyond `limit` bytes."""
    return capped(response.iter_bytes(), limit)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, left(timeout, httpcore.ConnectTimeout)
        )
        return _Stream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _Stream(stream)

    def sleep(self, seconds: float) -> None:
        rest = remaining()
        time.sleep(seconds if rest is None else max(0.0, min(seconds, rest)))


class DeadlineTransport(httpx.HTTPTransport):
    """An HTTPTransport whose sockets honour the `deadline()` of the calling context."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = self._pool
        # httpcore takes a network backend at pool creation only; httpx builds the pool
        # itself, so the backend is wrapped in place (httpcore >= 1.0 keeps it here).
        pool._network_backend = _Backend(pool._network_backend)

