"""The `aws-secrets-manager` backend's configuration: its TOML table and the checks on it.

`SecretsManagerConfig` is what `[[accounts.backends]] type = "aws-secrets-manager"` parses
into; the secret's region comes from `region` or from the secret_id ARN, never both in
disagreement. No AWS call and no boto3 import happens here.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from backends.base import BackendConfig
from rotator.netpolicy import check_aws_region

__all__ = ["TYPE", "SecretsManagerConfig"]

TYPE: Final = "aws-secrets-manager"
_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+$")


def _arn_region(secret_id: str) -> str | None:
    match = _ARN.match(secret_id)
    return match.group("region") if match else None


class SecretsManagerConfig(BackendConfig):
    """`[[accounts.backends]] type = "aws-secrets-manager"`."""

    type: Literal["aws-secrets-manager"] = TYPE
    secret_id: str = Field(min_length=1, description="secret name or full ARN")
    region: str | None = None
    endpoint_url: str | None = None
    kms_key_id: str | None = None
    create_if_missing: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    profile: str | None = None

    @field_validator("tags")
    @classmethod
    def _own_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key in tags:
            if key.startswith(("rotator:", "aws:")):
                raise ValueError(f"tag {key!r}: the rotator: and aws: prefixes are reserved")
        return tags

    _region = field_validator("region")(check_aws_region)

    @model_validator(mode="after")
    def _one_region(self) -> SecretsManagerConfig:
        arn_region = check_aws_region(_arn_region(self.secret_id))
        if arn_region and self.region and arn_region != self.region:
            raise ValueError(
                f"region {self.region!r} does not match the region {arn_region!r} in the "
                f"secret_id ARN; drop `region` or make them the same"
            )
        if not (arn_region or self.region):
            raise ValueError("region: required unless secret_id is a full ARN")
        if arn_region and self.create_if_missing:
            raise ValueError("create_if_missing needs the secret's name as secret_id, not an ARN")
        return self

    @property
    def resolved_region(self) -> str:
        region = _arn_region(self.secret_id) or self.region
        assert region is not None  # guaranteed by _one_region
        return region
