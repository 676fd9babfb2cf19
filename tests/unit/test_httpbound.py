"""rotator.util.httpbound: a wall-clock deadline per attempt and a size cap, against a real socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from rotator.util.httpbound import DeadlineTransport, TooLarge, deadline, read_capped


@pytest.fixture
def dripping_server() -> Iterator[str]:
    """Answers every connection with headers then one byte every 50 ms, for up to 30 s."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            data = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000
            for i in range(len(data)):
                if stop.is_set():
                    return
                try:
                    conn.send(data[i : i + 1])
                except OSError:
                    return
                stop.wait(0.05)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/"
    finally:
        stop.set()
        srv.close()


class TestDeadline:
    def test_a_slowloris_ends_by_the_deadline(self, dripping_server: str) -> None:
        """Per-read timeouts never fire on a byte every 50 ms; the attempt's deadline does."""
        with httpx.Client(transport=DeadlineTransport(), timeout=5.0) as client:
            request = client.build_request("GET", dripping_server)
            # A byte comes every 50 ms, so the 5 s read timeout can never be what fires.
            with pytest.raises(httpx.ReadTimeout), deadline(0.5):
                response = client.send(request, stream=True)
                read_capped(response, 1_000_000)

    def test_without_a_deadline_reads_go_on(self, dripping_server: str) -> None:
        """Outside `deadline()` the transport behaves like httpx's (bytes keep coming)."""
        with (
            httpx.Client(transport=DeadlineTransport(), timeout=5.0) as client,
            client.stream("GET", dripping_server) as response,
        ):
            first = next(response.iter_raw(1))
        assert first == b"x"


class TestSizeCap:
    def test_too_large_stops_reading(self) -> None:
        """A body past the cap raises TooLarge after reading about the cap, not the whole."""
        sent = []

        def endless() -> Iterator[bytes]:
            for _ in range(10_000):
                sent.append(1)
                yield b"x" * 1024

        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
        with httpx.Client(transport=transport) as client:
            response = client.send(client.build_request("GET", "http://t/"), stream=True)
            with pytest.raises(TooLarge, match="larger than 4096 bytes"):
                read_capped(response, 4096)
        assert len(sent) < 10
