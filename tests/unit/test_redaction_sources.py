"""What the redactor learns at start-up and the credential shapes it knows without being told;
and MotherDuck answers that are malformed in ways a hostile server would choose."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from rotator.config import parse_config
from rotator.errors import MotherDuckError, OutcomeUnknown
from rotator.log import RedactSecrets, redact, register_known_secrets, scrub
from rotator.motherduck.client import MotherDuckClient, RetryPolicy
from rotator.secret import Secret


class TestRegisterKnownSecrets:
    def test_admin_token_backend_credentials_and_webhook_urls(self, tmp_path: Path) -> None:
        """Values named by the config and the usual credential variables are masked."""
        hook = f"https://hooks.example.com/x/{secrets.token_hex(16)}"
        config = parse_config(
            f"""
[motherduck]
admin_token_env = "MY_ADMIN"
[[accounts]]
username = "svc_a"
  [[accounts.backends]]
  type = "vault"
  url = "https://vault.example"
  path = "md/a"
  auth = {{method = "approle", role_id_env = "MY_ROLE", secret_id_env = "MY_SECRET_ID"}}
[notifications]
on_failure = [{{type = "webhook", url = "{hook}"}}]
""",
            base_dir=tmp_path,
        )
        values = {
            "MY_ADMIN": "admin-" + secrets.token_hex(12),
            "MY_ROLE": "role-" + secrets.token_hex(12),
            "MY_SECRET_ID": "sid-" + secrets.token_hex(12),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "UNRELATED": "not-a-secret-value",
        }
        register_known_secrets(config, values)
        text = " ".join([*values.values(), hook])
        masked = redact(text)
        for name, value in values.items():
            assert (value in masked) == (name == "UNRELATED"), name
        assert hook not in masked


class TestShapes:
    @pytest.mark.parametrize(
        "value",
        [
            "hvs." + "A1b2C3d4" * 4,
            "AKIA" + "ABCDEFGHIJKLMNOP",
            "https://hooks.slack.com/services/T000/B000/" + "x" * 24,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        ],
    )
    def test_unregistered_credentials_are_masked(self, value: str) -> None:
        """A Vault token, an AWS key id, a Slack URL or a JWT nobody registered is masked."""
        assert value not in RedactSecrets(use_registry=False).redact(f"before {value} after")

    def test_scrub_redacts_then_cuts(self) -> None:
        """A known secret cut by the limit would leave a piece; scrub masks it first."""
        secret = Secret("piece-of-" + secrets.token_hex(20))
        text = secret.reveal() + "." * 470
        assert secret.reveal()[-24:] in text[-500:]
        out = scrub(text, 500)
        assert secret.reveal()[-10:] not in out and "***" in out


def client(body: bytes, status: int = 200) -> MotherDuckClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    return MotherDuckClient(
        "http://md.test",
        Secret("admin-token-for-tests"),
        transport=transport,
        retry=RetryPolicy.no_wait(attempts=1),
    )


class TestMalformedAnswers:
    @pytest.mark.parametrize(
        "body",
        [b"[" * 100_000 + b"]" * 100_000, b"<html>maintenance</html>", b'{"tokens": [{}]}'],
        ids=["deep", "html", "missing-id"],
    )
    def test_listing_is_a_one_line_error(self, body: bytes) -> None:
        """Deep JSON, HTML or a token without an id: MotherDuckError, one line."""
        with pytest.raises(MotherDuckError) as info:
            client(body).list_tokens("svc_a")
        assert "\n" not in str(info.value) and "unexpected body" in str(info.value)

    @pytest.mark.parametrize(
        "body", [b"[" * 100_000 + b"]" * 100_000, b"<html/>", b'{"id": "t1", "name": "n"}']
    )
    def test_create_is_an_unknown_outcome(self, body: bytes) -> None:
        """On a token-creating POST the same answers mean "may or may not exist"."""
        with pytest.raises(OutcomeUnknown) as info:
            client(body).create_token("svc_a", "rotator-x")
        assert info.value.token_name == "rotator-x" and not info.value.in_flight

    def test_a_huge_answer_is_refused(self) -> None:
        """Past the size cap the answer is not read on: a one-line error."""
        with pytest.raises(MotherDuckError, match="larger than"):
            client(b'{"tokens": [' + b" " * (9 * 1024 * 1024) + b"]}").list_tokens("svc_a")

    def test_admin_token_with_a_line_break_is_refused_unechoed(self) -> None:
        """A CR/LF in the admin token is a ConfigError that does not contain the value."""
        from rotator.errors import ConfigError

        with pytest.raises(ConfigError) as info:
            MotherDuckClient("http://md.test", Secret("first-part\r\nsecond-part"))
        assert "second-part" not in str(info.value) and "first-part" not in str(info.value)
