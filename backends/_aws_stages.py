"""Secrets Manager's version stages and rotator's tags on a secret, as plain data.

A run's version id (`version_id_for`), the three staging labels, the `rotator:fence` tag
and the three `rotator:*` tag groups (promoted, staged, promoted before that) that carry
each labelled version's token id, name and run id. `_Snapshot` is what one DescribeSecret
said about them; `_group_tags` writes one group. No AWS call and no boto3 import happens
here: `backends.aws_secrets_manager` reads, moves and tags through its one client.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CURRENT", "FENCE_TAG", "PENDING", "PREVIOUS", "version_id_for"]

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
# Fixed forever: every non-UUID run id maps to its version id through it.
_NAMESPACE = uuid.UUID("5b0f3c1e-2d4a-5e6f-9a7b-8c9d0e1f2a3b")
_TAG_UNSAFE = re.compile(r"[^\w .:/=+\-@]")
_FIELDS = ("version_id", "token_id", "token_name", "run_id")
_GROUPS = ("", "pending_", "previous_")  # promoted, staged, promoted before that
FENCE_TAG = "rotator:fence"


def version_id_for(run_id: str) -> str:
    """The VersionId (ClientRequestToken) a run writes: `run_id` if a UUID, else uuid5."""
    try:
        uuid.UUID(run_id)
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, run_id))
    return run_id if 32 <= len(run_id) <= 64 else str(uuid.uuid5(_NAMESPACE, run_id))


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What DescribeSecret says: labels per version, tags, KMS key. Never a value."""

    stages: Mapping[str, tuple[str, ...]]
    tags: Mapping[str, str]
    kms_key_id: str | None

    def holder(self, label: str) -> str | None:
        return next((vid for vid, labels in self.stages.items() if label in labels), None)

    def labels(self, version_id: str) -> tuple[str, ...]:
        return self.stages.get(version_id, ())

    def group(self, prefix: str) -> dict[str, str]:
        return {f: self.tags.get(f"rotator:{prefix}{f}", "") for f in _FIELDS}

    def trusted(self, version_id: str) -> dict[str, str | None]:
        """Token facts from the tag group written for `version_id`, else all None."""
        for prefix in _GROUPS:
            group = self.group(prefix)
            if group["version_id"] == version_id:
                return {f: group[f] or None for f in ("token_id", "token_name", "run_id")}
        return {"token_id": None, "token_name": None, "run_id": None}


def _group_tags(prefix: str, *values: str | None) -> dict[str, str]:
    """One tag group (`rotator:<prefix>version_id` ...), values made tag-safe."""
    pairs = zip(_FIELDS, values, strict=True)
    return {f"rotator:{prefix}{f}": _TAG_UNSAFE.sub("_", v or "")[:256] for f, v in pairs}
