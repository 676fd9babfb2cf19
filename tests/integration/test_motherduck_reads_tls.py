"""ReadClient over https, next to MotherDuckClient: the same trust (certifi, or
SSL_CERT_FILE), the same refusal of an untrusted certificate or a wrong host name.

A TLS server on loopback with a certificate for `localhost` signed by a CA made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotator.errors import TransportError
from rotator.motherduck.client import MotherDuckClient
from rotator.motherduck.reads import ReadClient
from rotator.motherduck.retry import RetryPolicy
from rotator.secret import Secret

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

LISTING = {"tokens": [{"id": "t1", "name": "n", "created_ts": "2026-01-01T00:00:00Z"}]}


def _cert(
    subject: str, issuer: Any, issuer_key: Any, key: Any, *, ca: bool, names: list[Any]
) -> Any:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a server certificate for `localhost` only (not for 127.0.0.1)."""
    base = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotator test CA")])
    ca = _cert("rotator test CA", ca_name, ca_key, ca_key, ca=True, names=[])
    key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("localhost", ca_name, ca_key, key, ca=False, names=[x509.DNSName("localhost")])
    pem = serialization.Encoding.PEM
    paths = {"ca": base / "ca.pem", "cert": base / "server.pem", "key": base / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(server.public_bytes(pem))
    paths["key"].write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert ipaddress.ip_address("127.0.0.1")  # the name the certificate does not carry
    return paths


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        payload = json.dumps(LISTING).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def port(pki: dict[str, Path]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def read(kind: str, url: str) -> Any:
    retry = RetryPolicy.no_wait(attempts=1)
    cls = MotherDuckClient if kind == "httpx" else ReadClient
    with cls(url, Secret("eyJh.eyJi.c"), retry=retry) as client:  # type: ignore[operator]
        try:
            return client.list_tokens("svc_a")
        except TransportError as exc:
            return exc


def test_trusted_by_ssl_cert_file(
    pki: dict[str, Path], port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))
    answers = [read(kind, f"https://localhost:{port}") for kind in ("httpx", "urllib3")]
    assert answers[0] == answers[1]
    assert [t.id for t in answers[1]] == ["t1"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_untrusted_or_wrong_name_is_refused(
    pki: dict[str, Path], port: int, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """Unknown CA (certifi only) or a name the certificate does not carry: never sent."""
    if host == "127.0.0.1":
        monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))  # trusted CA, wrong name
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    for kind in ("httpx", "urllib3"):
        error = read(kind, f"https://{host}:{port}")
        assert isinstance(error, TransportError), (kind, error)
        assert "(ConnectError: " in str(error), (kind, str(error))
        assert "eyJh.eyJi.c" not in str(error)
