"""The MotherDuck REST API's JSON answers as typed values, or `Malformed` if they aren't.

Tolerant where the spec allows (absent optional fields, unknown extra fields, any number
of fraction digits in a timestamp), strict where a wrong shape would mislead the engine
(a token without an id, a created token without its secret). Anything else a server may
send (HTML, deep nesting, wrong types) is `Malformed` too, never another exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from rotator.secret import Secret

__all__ = ["CreatedToken", "Malformed", "TokenInfo", "load_json"]

FRACTION_RE: Final = re.compile(r"\.(\d+)")


class Malformed(ValueError):
    """A success body that does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token's metadata, as listed or created (never the secret)."""

    id: str
    name: str | None
    created_ts: datetime | None
    expire_at: datetime | None
    token_type: str = "read_write"
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class CreatedToken:
    """A freshly minted token: its metadata and its secret (shown once by the API)."""

    info: TokenInfo
    token: Secret


def load_json(content: bytes) -> Any:
    """Decode a body; Malformed when it is not JSON or nests deeper than Python recurses."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("not JSON") from None
    except RecursionError:
        raise Malformed("JSON nested too deeply") from None


def object_(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"expected a JSON object, got {type(value).__name__}")
    return value


def list_of(answer: Any, key: str) -> list[Any]:
    items = object_(answer).get(key)
    if not isinstance(items, list):
        raise Malformed(f"'{key}' is not a list")
    return items


def optional_username(answer: Any) -> str | None:
    username = object_(answer).get("username")
    if not (username is None or isinstance(username, str)):
        raise Malformed("'username' is not a string")
    return username


def username(answer: Any) -> str:
    username = optional_username(answer)
    if not username:
        raise Malformed("no 'username' string")
    return username


def true(answer: Any) -> bool:
    return True


def token_list(answer: Any) -> list[TokenInfo]:
    return [token_info(item) for item in list_of(answer, "tokens")]


def accounts(answer: Any) -> list[dict[str, Any]]:
    return [object_(item) for item in list_of(answer, "accounts")]


def created(answer: Any) -> CreatedToken:
    token = object_(answer).get("token")
    if not isinstance(token, str) or not token:
        raise Malformed("no 'token' string")
    return CreatedToken(info=token_info(answer), token=Secret(token))


def token_info(item: Any) -> TokenInfo:
    data = object_(item)
    token_id = data.get("id")
    if not isinstance(token_id, str) or not token_id:
        raise Malformed("a token has no 'id' string")
    name = data.get("name")
    token_type = data.get("token_type") or "read_write"
    read_only = data.get("read_only", token_type == "read_scaling")
    if not (name is None or isinstance(name, str)) or not isinstance(token_type, str):
        raise Malformed(f"token {token_id}: 'name' or 'token_type' is not a string")
    if not isinstance(read_only, bool):
        raise Malformed(f"token {token_id}: 'read_only' is not a boolean")
    return TokenInfo(
        id=token_id,
        name=name,
        created_ts=timestamp(data.get("created_ts"), token_id, "created_ts"),
        expire_at=timestamp(data.get("expire_at"), token_id, "expire_at"),
        token_type=token_type,
        read_only=read_only,
    )


def timestamp(value: Any, token_id: str, key: str) -> datetime | None:
    """RFC 3339 with Z or an offset and any number of fraction digits; naive means UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"token {token_id}: '{key}' is not a string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    if len(text) > 10 and text[10] in "tT ":
        text = text[:10] + "T" + text[11:]
    text = FRACTION_RE.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"token {token_id}: '{key}' is not an RFC 3339 timestamp") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
