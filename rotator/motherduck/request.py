"""What a request to the MotherDuck API is, whichever library sends it.

`MotherDuckClient` (httpx) and the Lambda's `ReadClient` (urllib3) share these: the routes
and how a username or token id goes into a path, the admin token's place in a header, the
size cap on an answer and the shortest attempt a retry budget may leave. Nothing here
imports an HTTP library.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from rotator.errors import ConfigError
from rotator.secret import Secret

__all__ = [
    "ACTIVE_ACCOUNTS",
    "INSTANCES",
    "MAX_BODY_BYTES",
    "MIN_ATTEMPT_SECONDS",
    "TOKEN",
    "TOKENS",
    "USER",
    "USERS",
    "check_admin_token",
    "route_path",
]

USERS: Final = "/v1/users"
USER: Final = "/v1/users/{username}"
TOKENS: Final = "/v1/users/{username}/tokens"
TOKEN: Final = "/v1/users/{username}/tokens/{token_id}"
INSTANCES: Final = "/v1/users/{username}/instances"
ACTIVE_ACCOUNTS: Final = "/v1/active_accounts"

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""No answer of the API is near this (10,000 tokens' metadata is ~2 MB); past it, stop."""
MIN_ATTEMPT_SECONDS: Final = 1.0
"""An attempt is given at least this long, even when the retry budget has less left."""


def check_admin_token(admin_token: Secret) -> None:
    """The admin token must go into a header as it is."""
    if any(not c.isprintable() or c.isspace() for c in admin_token.reveal()):
        # Never echoed: a value with a line break is usually two secrets pasted together.
        raise ConfigError(
            "the admin token contains whitespace or a control character (a CR/LF?); "
            "set the environment variable to the bare token"
        )


def route_path(route: str, **segments: str) -> str:
    """`route` with each `{name}` replaced by its value as one path segment."""
    return route.format(**{key: _segment(value) for key, value in segments.items()})


def _segment(value: str) -> str:
    """One URL path segment; '.' and '..' are encoded so nothing normalizes them away."""
    if not value:
        raise ValueError("a username or token id must not be empty")
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted
