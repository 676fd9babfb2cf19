"""The pydantic model of an `aws-secrets-manager` backend table.

Kept apart from backends/aws_secrets_manager.py so that loading the backend class (an
entry point, at every config load and Lambda start) imports no pydantic; the checks it
runs live in backends/_aws_config.py, shared with the pydantic-free loader.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from backends._aws_config import TYPE, arn_region, one_region, own_tags, secret_id_rule
from backends.base import optional, printable
from backends.models import BackendConfig
from rotator.netpolicy import aws_endpoint_url, check_aws_region

__all__ = ["SecretsManagerConfig"]


class SecretsManagerConfig(BackendConfig):
    """`[[accounts.backends]] type = "aws-secrets-manager"`."""

    type: Literal["aws-secrets-manager"] = TYPE
    secret_id: str = Field(min_length=1, description="secret name or full ARN")
    region: str | None = None
    # Plain http to a host other than loopback: refused unless this says so (before
    # endpoint_url, whose validator reads it).
    insecure: bool = False
    endpoint_url: str | None = None
    kms_key_id: str | None = None
    create_if_missing: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    profile: str | None = None

    _own_tags = field_validator("tags")(own_tags)
    _region = field_validator("region")(check_aws_region)
    _secret_id = field_validator("secret_id")(secret_id_rule)
    _printable = field_validator("kms_key_id", "profile")(optional(printable))

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return aws_endpoint_url(value, insecure=bool(info.data.get("insecure")))

    @model_validator(mode="after")
    def _one_region(self) -> SecretsManagerConfig:
        one_region(self.secret_id, self.region, self.create_if_missing)
        return self

    @property
    def resolved_region(self) -> str:
        region = arn_region(self.secret_id) or self.region
        assert region is not None  # guaranteed by _one_region
        return region
