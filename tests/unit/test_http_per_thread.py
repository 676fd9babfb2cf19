"""The MotherDuck client's own httpx transport: one per calling thread and URL scheme."""

from __future__ import annotations

import ssl
import threading

import httpx
import pytest

from rotator.motherduck import client as md_client


class Made(httpx.MockTransport):
    """A transport that answers 200 `{"accounts": []}` and remembers the thread that made it."""

    def __init__(self, scheme: str, context: object) -> None:
        super().__init__(lambda request: httpx.Response(200, json={"accounts": []}))
        self.scheme = scheme
        self.context = context
        self.thread = threading.current_thread()
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Made]:
    transports: list[Made] = []

    def make(scheme: str, context: object) -> Made:
        transports.append(Made(scheme, context))
        return transports[-1]

    monkeypatch.setattr(md_client, "_transport_for", make)
    return transports


def in_thread(action: object) -> None:
    worker = threading.Thread(target=action)  # type: ignore[arg-type]
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()


def test_one_transport_per_thread_and_scheme(made: list[Made]) -> None:
    """Each thread gets its own transport per scheme, made at its first request and reused."""
    per_thread = md_client._TransportPerThread()
    http = httpx.Client(transport=per_thread)
    http.get("http://md.test/a")
    http.get("http://md.test/b")
    http.get("https://md.test/c")
    assert [(t.scheme, t.thread) for t in made] == [
        ("http", threading.current_thread()),
        ("https", threading.current_thread()),
    ]
    in_thread(lambda: [http.get("http://md.test/d"), http.get("http://md.test/e")])
    assert len(made) == 3 and made[2].thread is not threading.current_thread()
    http.close()
    assert all(t.closed for t in made)


def test_one_tls_context_per_scheme_shared_by_the_threads(made: list[Made]) -> None:
    """The CA bundle is loaded once per client and scheme, not once per thread; https gets
    httpx's default verifying context, plain http one that trusts no CA."""
    http = httpx.Client(transport=md_client._TransportPerThread())
    together = threading.Barrier(3)

    def both() -> None:
        http.get("https://md.test/")
        http.get("http://md.test/")
        together.wait(timeout=30)  # all three alive at once: three transports per scheme

    workers = [threading.Thread(target=both) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    https = [t.context for t in made if t.scheme == "https"]
    plain = [t.context for t in made if t.scheme == "http"]
    assert len(https) == 3 and len(plain) == 3
    assert all(c is https[0] for c in https) and all(c is plain[0] for c in plain)
    assert isinstance(https[0], ssl.SSLContext) and https[0].verify_mode == ssl.CERT_REQUIRED
    assert https[0].check_hostname and https[0].cert_store_stats()["x509_ca"] > 0
    assert isinstance(plain[0], ssl.SSLContext) and plain[0].cert_store_stats()["x509_ca"] == 0
    http.close()


def test_a_new_thread_takes_over_an_ended_threads_transport(made: list[Made]) -> None:
    """A thread after another one reuses its transport (and connection) instead of a new one;
    the transports of any other ended threads are closed."""
    http = httpx.Client(transport=md_client._TransportPerThread())
    for _ in range(3):
        in_thread(lambda: http.get("http://md.test/"))
    assert len(made) == 1 and not made[0].closed  # each thread took over the one before's
    first, second = threading.Event(), threading.Event()

    done = threading.Event()

    def hold(started: threading.Event) -> None:
        http.get("http://md.test/")
        started.set()
        done.wait(30)

    # Two threads at once: one takes the ended thread's transport, the other gets a new one.
    holders = [
        threading.Thread(target=hold, args=(first,)),
        threading.Thread(target=hold, args=(second,)),
    ]
    for worker in holders:
        worker.start()
    assert first.wait(30) and second.wait(30)
    assert len(made) == 2
    done.set()
    for worker in holders:
        worker.join(timeout=30)
    # Both ended: this thread takes one of their transports and closes the other.
    http.get("http://md.test/")
    assert len(made) == 2 and sorted(t.closed for t in made) == [False, True]
    http.close()
    assert all(t.closed for t in made)


def test_the_default_client_uses_it(made: list[Made]) -> None:
    """A MotherDuckClient without an injected transport routes through it."""
    from rotator.secret import Secret

    with md_client.MotherDuckClient("http://md.test", Secret("x" * 20)) as md:
        md.active_accounts()
        in_thread(md.active_accounts)
    assert [t.scheme for t in made] == ["http", "http"]
    assert all(t.closed for t in made)


def test_the_client_keeps_no_cookies() -> None:
    """What a response sets is neither kept nor sent back with the next request."""
    from rotator.secret import Secret

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"accounts": []}, headers={"Set-Cookie": "sticky=abc; Path=/"}
        )

    with md_client.MotherDuckClient(
        "http://md.test", Secret("x" * 20), transport=httpx.MockTransport(answer)
    ) as md:
        md.active_accounts()
        md.active_accounts()
    assert [r.headers.get("cookie") for r in seen] == [None, None]


def test_the_request_is_what_an_httpx_client_would_send() -> None:
    """Requests bypass httpx.Client: the same method, URL, headers and body as it builds."""
    from rotator.secret import Secret

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"token": "t" * 40, "id": "id-1", "name": "n"} if request.method == "POST" else {}
        return httpx.Response(200, json=body)

    with md_client.MotherDuckClient(
        "http://md.test/", Secret("x" * 20), transport=httpx.MockTransport(answer), timeout=7
    ) as md:
        md.create_token("svc_a", "rot-1", ttl_seconds=60)
    [sent] = seen
    with httpx.Client() as http:
        expected = http.build_request(
            "POST",
            "http://md.test/v1/users/svc_a/tokens",
            json={"name": "rot-1", "token_type": "read_write", "ttl": 60},
            headers={"Authorization": f"Bearer {'x' * 20}", "Accept-Encoding": "identity"},
            timeout=7,
        )
    assert (sent.method, sent.url) == (expected.method, expected.url)
    assert list(sent.headers.multi_items()) == list(expected.headers.multi_items())
    assert sent.content == expected.content
    assert sent.extensions["timeout"] == expected.extensions["timeout"]
