"""The Secrets Manager backend without a server: version ids, config, error translation.

AWS answers come from botocore's Stubber (real request validation, no network) or from
a tiny fake client raising botocore's own exceptions; nothing here can reach AWS.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber
from pydantic import ValidationError

from backends import load_factory, validate_config
from backends.aws_secrets_manager import (
    SecretsManagerBackend,
    SecretsManagerConfig,
    version_id_for,
)
from backends.base import TokenRecord
from rotator.errors import BackendConflict, BackendError
from rotator.secret import Secret

REPO = Path(__file__).resolve().parents[2]
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:md/app-AbCdEf"
SECRET = "md-secret-value-never-printed"


def stubbed(secret_id: str = "md/app", **over: Any) -> tuple[SecretsManagerBackend, Stubber]:
    """A backend over a real botocore client whose every answer comes from a Stubber."""
    client = botocore.session.get_session().create_client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # never used: the Stubber answers first
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.activate()
    cfg = SecretsManagerConfig(secret_id=secret_id, region="us-east-1", **over)
    return SecretsManagerBackend(cfg, account="svc", client=client), stubber


class RaisingClient:
    """A client whose every call raises `exc` (as botocore does before any answer)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            raise self.exc

        return call


def record() -> TokenRecord:
    return TokenRecord(token=Secret(SECRET), token_id="tok-1", token_name="rotator-svc-1")


class TestVersionIdFor:
    def test_a_uuid_run_id_is_the_version_id(self) -> None:
        """A Lambda rotation's ClientRequestToken (a UUID) is used verbatim, case included."""
        token = str(uuid.uuid4()).upper()
        assert version_id_for(token) == token

    def test_other_run_ids_map_to_a_stable_uuid5(self) -> None:
        """A non-UUID run id maps to the same UUID every time, and different ids differ."""
        first = version_id_for("nightly-2025-01-01")
        assert first == version_id_for("nightly-2025-01-01")
        assert first != version_id_for("nightly-2025-01-02")
        assert uuid.UUID(first).version == 5

    def test_the_mapping_never_changes(self) -> None:
        """The namespace is fixed: a resumed run on a newer rotator finds its old version."""
        assert version_id_for("run") == str(
            uuid.uuid5(uuid.UUID("5b0f3c1e-2d4a-5e6f-9a7b-8c9d0e1f2a3b"), "run")
        )


class TestConfig:
    def test_arn_region_must_match_region(self) -> None:
        """An ARN from eu-west-1 with region us-east-1 is a config error naming both."""
        with pytest.raises(ValidationError, match=r"'us-east-1' does not match .*'eu-west-1'"):
            SecretsManagerConfig(secret_id=ARN, region="us-east-1")

    def test_region_comes_from_the_arn(self) -> None:
        """A full ARN needs no region, and the label carries the ARN's region."""
        backend = SecretsManagerBackend(SecretsManagerConfig(secret_id=ARN))
        assert backend.label == f"aws-secrets-manager:eu-west-1:{ARN}"

    def test_a_name_needs_a_region(self) -> None:
        """A plain secret name without region is rejected with what to add."""
        with pytest.raises(ValidationError, match="region: required"):
            SecretsManagerConfig(secret_id="md/app")

    def test_reserved_tag_prefixes(self) -> None:
        """User tags may not use the rotator: or aws: prefixes."""
        with pytest.raises(ValidationError, match="reserved"):
            SecretsManagerConfig(secret_id="x", region="us-east-1", tags={"rotator:x": "1"})

    def test_create_if_missing_needs_a_name(self) -> None:
        """create_if_missing with an ARN is refused (CreateSecret takes a name)."""
        with pytest.raises(ValidationError, match="not an ARN"):
            SecretsManagerConfig(secret_id=ARN, create_if_missing=True)

    def test_registered_under_its_entry_point(self) -> None:
        """The rotator.backends entry point loads this class and validates its table."""
        assert load_factory("aws-secrets-manager") is SecretsManagerBackend
        cfg = validate_config(
            {"type": "aws-secrets-manager", "secret_id": "md/app", "region": "us-east-1"}
        )
        assert isinstance(cfg, SecretsManagerConfig) and cfg.format == "json"
        with pytest.raises(ValidationError):
            validate_config({"type": "aws-secrets-manager", "secret_id": "x", "nope": 1})

    def test_from_config_builds_without_touching_aws(self) -> None:
        """from_config only stores settings; the boto3 client is built on the first call."""
        cfg = SecretsManagerConfig(secret_id="md/app", region="us-east-1", profile="missing")
        backend = SecretsManagerBackend.from_config(cfg, account="svc", base_dir=Path("."))
        assert backend.label == "aws-secrets-manager:us-east-1:md/app"


class TestErrorTranslation:
    def test_access_denied_names_the_action_and_permission(self) -> None:
        """AccessDenied becomes one line with the IAM action, secret id, region and a fix."""
        backend, stub = stubbed()
        stub.add_client_error("describe_secret", "AccessDeniedException", "User is not allowed")
        with pytest.raises(BackendError) as caught:
            backend.read_current()
        message = str(caught.value)
        assert message == (
            "access denied: secretsmanager:DescribeSecret on secret md/app in us-east-1; "
            "grant the role secretsmanager:DescribeSecret on this secret"
        )
        assert caught.value.backend == "aws-secrets-manager:us-east-1:md/app"
        assert caught.value.__cause__ is not None

    def test_access_denied_on_put_mentions_kms(self) -> None:
        """Denied PutSecretValue also hints at the KMS permissions, never the value."""
        backend, stub = stubbed()
        stub.add_response("describe_secret", {"VersionIdsToStages": {"v" * 32: ["AWSCURRENT"]}})
        stub.add_client_error("put_secret_value", "AccessDeniedException", "no")
        with pytest.raises(BackendError, match="kms:GenerateDataKey") as caught:
            backend.stage(record(), run_id=str(uuid.uuid4()))
        assert SECRET not in str(caught.value)

    def test_missing_secret(self) -> None:
        """ResourceNotFound names the secret and region and suggests create_if_missing."""
        backend, stub = stubbed()
        stub.add_client_error("describe_secret", "ResourceNotFoundException", "not found")
        with pytest.raises(BackendError, match=r"md/app in us-east-1 does not exist.*create_if_"):
            backend.read_current()

    def test_missing_secret_reads_as_empty_when_it_may_be_created(self) -> None:
        """With create_if_missing a missing secret is simply 'nothing stored yet'."""
        backend, stub = stubbed(create_if_missing=True)
        stub.add_client_error("describe_secret", "ResourceNotFoundException", "not found")
        assert backend.read_current() is None

    def test_marked_for_deletion(self) -> None:
        """InvalidRequest about deletion suggests restore-secret with the right arguments."""
        backend, stub = stubbed()
        stub.add_client_error(
            "describe_secret",
            "InvalidRequestException",
            "You tried to perform the operation on a secret that's currently marked deleted.",
        )
        with pytest.raises(BackendError, match="restore-secret --secret-id md/app --region us"):
            backend.read_current()

    def test_bad_credentials(self) -> None:
        """Rejected credentials say so and point at refreshing them or `profile`."""
        backend, stub = stubbed()
        stub.add_client_error("describe_secret", "UnrecognizedClientException", "bad token")
        with pytest.raises(BackendError, match=r"rejected the credentials.*fix `profile`"):
            backend.read_current()

    def test_other_codes_keep_the_aws_code(self) -> None:
        """An unmapped error keeps its code and a one-line AWS message."""
        backend, stub = stubbed()
        stub.add_client_error("describe_secret", "InternalServiceError", "boom\nsecond line")
        with pytest.raises(BackendError) as caught:
            backend.read_current()
        assert "InternalServiceError: boom second line" in str(caught.value)

    def test_resource_exists_on_put_is_a_conflict(self) -> None:
        """PutSecretValue refusing our version id (different value) is a BackendConflict."""
        backend, stub = stubbed()
        stub.add_response("describe_secret", {"VersionIdsToStages": {"v" * 32: ["AWSCURRENT"]}})
        stub.add_client_error("put_secret_value", "ResourceExistsException", "in use")
        with pytest.raises(BackendConflict) as caught:
            backend.stage(record(), run_id=str(uuid.uuid4()))
        assert SECRET not in str(caught.value)

    def test_no_credentials(self) -> None:
        """botocore finding no credentials becomes one line on where to put them."""
        backend = SecretsManagerBackend(
            SecretsManagerConfig(secret_id="md/app", region="us-east-1"),
            client=RaisingClient(NoCredentialsError()),
        )
        with pytest.raises(BackendError, match=r"no usable AWS credentials.*attach a role"):
            backend.read_current()

    def test_unreachable_endpoint(self) -> None:
        """A connection failure names the endpoint and suggests checking endpoint_url."""
        backend = SecretsManagerBackend(
            SecretsManagerConfig(secret_id="md/app", region="us-east-1"),
            client=RaisingClient(EndpointConnectionError(endpoint_url="https://sm.example")),
        )
        with pytest.raises(BackendError) as caught:
            backend.read_current()
        message = str(caught.value)
        assert "https://secretsmanager.us-east-1.amazonaws.com" in message
        assert "endpoint_url" in message and "\n" not in message

    def test_unknown_profile(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A `profile` that does not exist is reported when the client is first needed."""
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        backend = SecretsManagerBackend(
            SecretsManagerConfig(secret_id="md/app", region="us-east-1", profile="nope")
        )
        with pytest.raises(BackendError, match="AWS profile 'nope' not found"):
            backend.read_current()


class TestVerbsOverStubs:
    def test_foreign_pending_conflict_names_the_version(self) -> None:
        """Another version holding AWSPENDING (not current) is refused before any write."""
        backend, stub = stubbed()
        foreign = "f" * 32
        stub.add_response(
            "describe_secret",
            {"VersionIdsToStages": {"c" * 32: ["AWSCURRENT"], foreign: ["AWSPENDING"]}},
        )
        with pytest.raises(BackendConflict, match=f"--remove-from-version-id {foreign}"):
            backend.stage(record(), run_id=str(uuid.uuid4()))
        stub.assert_no_pending_responses()

    def test_receipt_from_another_run_is_refused(self) -> None:
        """promote with a receipt whose version is not the run's raises before any call."""
        backend, _ = stubbed()
        with pytest.raises(BackendError, match="does not belong to run"):
            backend.promote({"version_id": "x" * 36}, run_id=str(uuid.uuid4()))


def test_importing_the_backend_does_not_import_boto3() -> None:
    """Lambda cold start: boto3/botocore load on the first AWS call, not at import."""
    code = (
        "import sys, backends.aws_secrets_manager as m; "
        "m.SecretsManagerConfig(secret_id='x', region='us-east-1'); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('boto3', 'botocore')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
