"""The Lambda's client pair (ReadClient + MotherDuckClient) says an insecure URL once.

A Lambda write builds both clients for one run; `motherduck.insecure_url` ("said on every
run") must not come twice. No request is sent: building the clients is what logs.
"""

from __future__ import annotations

from structlog.testing import capture_logs

from rotator.aws_lambda.mdclient import LambdaClient
from rotator.motherduck.client import MotherDuckClient
from rotator.secret import Secret

INSECURE = "http://10.1.2.3:8080"  # plain http to a non-loopback host; never contacted
TOKEN = Secret("admin-token-for-a-test")


def _warnings(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == "motherduck.insecure_url"]


def test_the_lambda_pair_warns_once_when_the_full_client_is_built() -> None:
    with capture_logs() as logs:
        client = LambdaClient(INSECURE, TOKEN, timeout=1.0)
        full = client.full()  # what a due account's create or revoke builds
        assert client.full() is full
        client.close()
    warned = _warnings(logs)
    assert len(warned) == 1
    assert warned[0]["url"] == INSECURE
    assert warned[0]["why"] == "plain http to a non-loopback host"


def test_a_client_on_its_own_still_warns_on_every_run() -> None:
    with capture_logs() as logs:
        MotherDuckClient(INSECURE, TOKEN, timeout=1.0).close()
        MotherDuckClient(INSECURE, TOKEN, timeout=1.0, warn_insecure=False).close()
        MotherDuckClient("http://127.0.0.1:9", TOKEN, timeout=1.0).close()  # loopback
    assert len(_warnings(logs)) == 1
