"""AWS Secrets Manager errors as one-line messages naming the secret and what to fix.

Kept apart from the backend's rotation logic: this is the table of what each AWS error
code (or botocore transport failure) means for a user, and nothing else. Never a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotator.errors import BackendConflict, BackendCredentials, BackendError

if TYPE_CHECKING:
    from botocore.exceptions import BotoCoreError, ClientError

CREDENTIAL_CODES = frozenset(
    [
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "ExpiredToken",
        "SignatureDoesNotMatch",
    ]
)


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def for_client_error(
    exc: ClientError, op: str
) -> tuple[str, type[BackendError], dict[str, object]]:
    """The MESSAGES key, error class and facts for an AWS error answer."""
    err = code(exc)
    detail = " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())[:200]
    if err == "InvalidRequestException" and "delet" in detail.lower():
        return "deleted", BackendError, {}
    kms = KMS_HINT if op in ("GetSecretValue", "PutSecretValue", "CreateSecret") else ""
    key = CODE_MESSAGES.get(err, "credentials" if err in CREDENTIAL_CODES else "aws")
    cls = BackendConflict if err == "ResourceExistsException" else BackendError
    if key == "credentials":
        cls = BackendCredentials  # a usage error (exit 2), like a bad admin token
    return key, cls, {"op": op, "code": err, "detail": detail, "kms": kms}


def for_transport_error(exc: BotoCoreError) -> str:
    """The MESSAGES key for a request that got no AWS answer."""
    from botocore import exceptions as bx

    kinds: list[tuple[Any, str]] = [
        (bx.NoCredentialsError | bx.PartialCredentialsError, "no_credentials"),
        (bx.ProfileNotFound, "profile"),
        (bx.InvalidRegionError, "region"),
        (bx.ConnectionError | bx.HTTPClientError, "unreachable"),
    ]
    return next((key for kind, key in kinds if isinstance(exc, kind)), "transport")


KMS_HINT = " (and kms:Decrypt/kms:GenerateDataKey on its KMS key, if customer managed)"
CODE_MESSAGES = {
    "AccessDeniedException": "denied",
    "ResourceNotFoundException": "missing",
    "DecryptionFailure": "kms",
    "EncryptionFailure": "kms",
    "KMSInvalidStateException": "kms",
}
# Each: one line naming the secret and region, and what to do. Never a value.
MESSAGES = {
    "missing": "{where} does not exist; create it, set create_if_missing = true, "
    "or fix secret_id/region",
    "deleted": "{where} is scheduled for deletion; restore it with "
    "`aws secretsmanager restore-secret --secret-id {sid} --region {region}`",
    "foreign_pending": "{where}: version {version} holds AWSPENDING and was not staged by "
    "this run (another rotation in progress?); finish that rotation, or clear it with "
    "`aws secretsmanager update-secret-version-stage --secret-id {sid} --version-stage "
    "AWSPENDING --remove-from-version-id {version} --region {region}`",
    "different_token": "{where}: version {version} of run {run_id} already holds a different "
    "token; roll the run back instead of staging again",
    "not_staged": "{where}: nothing staged by run {run_id} (version {version} is not "
    "AWSPENDING); stage it again or roll the run back",
    "receipt": "{where}: receipt version {given} does not belong to run {run_id} "
    "(expected {version})",
    "binary": "{where}: version {version} holds SecretBinary; rotator reads and writes "
    "SecretString only",
    "denied": "access denied: secretsmanager:{op} on {where}; grant the role "
    "secretsmanager:{op} on this secret{kms}",
    "credentials": "AWS rejected the credentials ({code}) for secretsmanager:{op} on {where}; "
    "refresh them or fix `profile`",
    "kms": "KMS refused secretsmanager:{op} on {where} ({code}); check kms_key_id "
    "and the key policy",
    "aws": "secretsmanager:{op} failed on {where}: {code}: {detail}",
    "no_credentials": "no usable AWS credentials for secretsmanager:{op} on {where}; set "
    "`profile`, AWS_PROFILE or AWS_ACCESS_KEY_ID, or attach a role",
    "profile": "AWS profile {profile!r} not found for {where}; fix `profile`",
    "region": "region {region!r} is not a valid AWS region name; fix `region`",
    "unreachable": "cannot reach Secrets Manager at {endpoint} for {where}: {what}; check "
    "endpoint_url, region and the network",
    "transport": "secretsmanager:{op} failed on {where}: {what}",
}
