"""The `aws-secrets-manager` backend's configuration: its checks and its plain settings.

`[[accounts.backends]] type = "aws-secrets-manager"` parses into the pydantic model
`SecretsManagerConfig` (backends/models/aws.py), or, when the pydantic-free config loader
(rotator/config/fast.py) proved the table valid, into nothing at all: the backend reads
the `SecretsManagerSettings` below from either, so a Lambda start that rotates nothing
imports no pydantic. The checks here are the model's and the fast loader's both (one
definition of each rule and message). The secret's region comes from `region` or from the
secret_id ARN, never both in disagreement. No AWS call and no boto3 import happens here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from rotator.netpolicy import check_aws_region

if TYPE_CHECKING:
    from backends.base import ValueFormat

__all__ = ["FIELDS", "TYPE", "SecretsManagerSettings", "secret_id_rule"]

TYPE: Final = "aws-secrets-manager"
# Every key of the table (SecretsManagerConfig's fields; a unit test holds them equal).
FIELDS: Final = frozenset(
    {"type", "format", "secret_id", "region", "insecure", "endpoint_url", "kms_key_id",
     "create_if_missing", "tags", "profile"}
)
_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+$")


_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")


def secret_id_rule(value: str) -> str:
    """A Secrets Manager secret name (AWS's characters, at most 512) or a full ARN."""
    if not (_ARN.match(value) or _NAME.fullmatch(value)):
        raise ValueError(
            "must be a secret name (letters, digits and /_+=.@-, at most 512 characters) "
            "or a full secret ARN"
        )
    return value


def arn_region(secret_id: str) -> str | None:
    match = _ARN.match(secret_id)
    return match.group("region") if match else None


def own_tags(tags: dict[str, str]) -> dict[str, str]:
    for key in tags:
        if key.startswith(("rotator:", "aws:")):
            raise ValueError(f"tag {key!r}: the rotator: and aws: prefixes are reserved")
    return tags


def one_region(secret_id: str, region: str | None, create_if_missing: bool) -> None:
    """The checks across keys: one region, known; a secret to create is named, not an ARN."""
    from_arn = check_aws_region(arn_region(secret_id))
    if from_arn and region and from_arn != region:
        raise ValueError(
            f"region {region!r} does not match the region {from_arn!r} in the "
            f"secret_id ARN; drop `region` or make them the same"
        )
    if not (from_arn or region):
        raise ValueError("region: required unless secret_id is a full ARN")
    if from_arn and create_if_missing:
        raise ValueError("create_if_missing needs the secret's name as secret_id, not an ARN")


@dataclass(frozen=True, slots=True)
class SecretsManagerSettings:
    """What the backend reads of its config: a validated model's fields, or a checked table's."""

    secret_id: str
    region: str | None = None
    insecure: bool = False
    endpoint_url: str | None = None
    kms_key_id: str | None = None
    create_if_missing: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    format: ValueFormat = "json"

    @classmethod
    def of(cls, config: Any) -> SecretsManagerSettings:
        """From a `SecretsManagerConfig` (or anything with its attributes)."""
        return cls(
            secret_id=config.secret_id,
            region=config.region,
            insecure=config.insecure,
            endpoint_url=config.endpoint_url,
            kms_key_id=config.kms_key_id,
            create_if_missing=config.create_if_missing,
            tags=dict(config.tags),
            profile=config.profile,
            format=config.format,
        )

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> SecretsManagerSettings:
        """From a table the fast loader proved valid (every value already of its type)."""
        fields: dict[str, Any] = {k: v for k, v in table.items() if k != "type"}
        if "tags" in fields:
            fields["tags"] = dict(fields["tags"])
        return cls(**fields)

    @property
    def resolved_region(self) -> str:
        region = arn_region(self.secret_id) or self.region
        assert region is not None  # guaranteed by one_region
        return region

