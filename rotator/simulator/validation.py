"""Request-body rules from the spec, as pure functions.

Each parser takes the decoded JSON body (or `MALFORMED` when it did not parse) and
returns normalized values, or raises a 400 `ApiError` carrying one issue per invalid
field, each naming the field (`"name: must be 1-255 characters"`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from rotator.simulator.apierror import bad_request

__all__ = [
    "DEFAULT_CONFIG",
    "INSTANCE_SIZES",
    "MALFORMED",
    "TOKEN_TYPES",
    "Malformed",
    "TokenRequest",
    "parse_instances",
    "parse_token_request",
    "parse_username",
    "username_issue",
]


class Malformed(enum.Enum):
    """Marks a request body that was not valid JSON."""

    MALFORMED = "malformed"


MALFORMED: Final = Malformed.MALFORMED

TOKEN_TYPES: Final = ("read_write", "read_scaling")
INSTANCE_SIZES: Final = ("pulse", "standard", "jumbo", "mega", "giga")
TTL_MIN: Final = 300
TTL_MAX: Final = 31_536_000
COOLDOWN_MIN: Final = 60
COOLDOWN_MAX: Final = 86_400
FLOCK_MAX: Final = 64
_USERNAME_CHARS = re.compile(r"[A-Za-z0-9_]*")

DEFAULT_CONFIG: Final[dict[str, dict[str, Any]]] = {
    "read_write": {"instance_size": "pulse"},
    "read_scaling": {"instance_size": "pulse", "flock_size": 0},
}
"""What a new service account's Ducklings look like before anyone PUTs a config."""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A validated `POST /v1/users/{username}/tokens` body."""

    name: str
    ttl: int | None
    token_type: str


def _object(body: object) -> dict[str, Any]:
    if body is MALFORMED:
        raise bad_request(["body: malformed JSON"])
    if not isinstance(body, dict):
        raise bad_request(["body: must be a JSON object"])
    return body


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_token_request(body: object) -> TokenRequest:
    """Validate a create-token body: name 1-255 chars, ttl 300-31536000, token_type."""
    data = _object(body)
    issues: list[str] = []
    name = data.get("name")
    if name is None:
        issues.append("name: is required")
    elif not isinstance(name, str) or not 1 <= len(name) <= 255:
        issues.append("name: must be 1-255 characters")
    ttl = data.get("ttl")
    if ttl is not None and not (_is_int(ttl) and TTL_MIN <= ttl <= TTL_MAX):
        issues.append(f"ttl: must be an integer between {TTL_MIN} and {TTL_MAX} seconds")
    token_type = data.get("token_type", "read_write")
    if token_type is None:
        token_type = "read_write"
    if token_type not in TOKEN_TYPES:
        issues.append("token_type: must be read_write or read_scaling")
    if issues:
        raise bad_request(issues)
    assert isinstance(name, str) and isinstance(token_type, str)
    return TokenRequest(name=name, ttl=ttl, token_type=token_type)


def username_issue(value: object, field: str = "username") -> str | None:
    """The issue with a service-account username, or None when it is well-formed."""
    if value is None:
        return f"{field}: is required"
    if not isinstance(value, str):
        return f"{field}: must be a string"
    if not 3 <= len(value) <= 255:
        return f"{field}: must be 3-255 characters"
    if not value[0].isascii() or not value[0].isalpha():
        return f"{field}: must start with a letter"
    if not _USERNAME_CHARS.fullmatch(value):
        return f"{field}: may contain only letters, digits and underscore"
    return None


def parse_username(body: object) -> str:
    """Validate a create-service-account body `{"username": ...}` (format only)."""
    data = _object(body)
    issue = username_issue(data.get("username"))
    if issue:
        raise bad_request([issue])
    username: str = data["username"]
    return username


def _part(
    data: dict[str, Any], key: str, *, flock: bool, issues: list[str]
) -> dict[str, Any] | None:
    field = f"config.{key}"
    part = data.get(key)
    if part is None:
        issues.append(f"{field}: is required")
        return None
    if not isinstance(part, dict):
        issues.append(f"{field}: must be an object")
        return None
    found = len(issues)
    out: dict[str, Any] = {}
    size = part.get("instance_size")
    if size not in INSTANCE_SIZES:
        issues.append(f"{field}.instance_size: must be one of {', '.join(INSTANCE_SIZES)}")
    out["instance_size"] = size
    if flock:
        flock_size = part.get("flock_size")
        if not (_is_int(flock_size) and 0 <= flock_size <= FLOCK_MAX):
            issues.append(f"{field}.flock_size: must be an integer between 0 and {FLOCK_MAX}")
        out["flock_size"] = flock_size
    cooldown = part.get("cooldown_seconds")
    if cooldown is not None:
        if not (_is_int(cooldown) and COOLDOWN_MIN <= cooldown <= COOLDOWN_MAX):
            issues.append(
                f"{field}.cooldown_seconds: must be an integer between "
                f"{COOLDOWN_MIN} and {COOLDOWN_MAX}"
            )
        elif size == "pulse":
            issues.append(f"{field}.cooldown_seconds: not allowed with instance_size pulse")
        out["cooldown_seconds"] = cooldown
    return out if len(issues) == found else None


def parse_instances(body: object) -> dict[str, dict[str, Any]]:
    """Validate a PUT instances body `{"config": {"read_write": ..., "read_scaling": ...}}`.

    Returns the normalized config (known fields only), which is also the answer.
    """
    data = _object(body)
    config = data.get("config")
    if config is None:
        raise bad_request(["config: is required"])
    if not isinstance(config, dict):
        raise bad_request(["config: must be an object"])
    issues: list[str] = []
    read_write = _part(config, "read_write", flock=False, issues=issues)
    read_scaling = _part(config, "read_scaling", flock=True, issues=issues)
    if issues or read_write is None or read_scaling is None:
        raise bad_request(issues)
    return {"read_write": read_write, "read_scaling": read_scaling}
