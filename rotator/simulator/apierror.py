"""The JSON error bodies the simulated MotherDuck API answers with.

Every failure the model or a fault rule produces is an `ApiError`; the server turns it
into `{"code": ..., "message": ..., "issues": [{"message": ...}]}` with the status from
the spec's table (plus the 429/5xx gateway statuses fault rules may ask for).
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

__all__ = [
    "ApiError",
    "bad_request",
    "error_for_status",
    "forbidden",
    "not_found",
    "unauthorized",
]

# status -> (code, default message); the first five are the spec's table.
_CODES: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad Request"),
    401: ("UNAUTHORIZED", "Invalid Credentials"),
    403: ("FORBIDDEN", "Unauthorized"),
    404: ("NOT_FOUND", "Not Found"),
    500: ("INTERNAL_SERVER_ERROR", "Internal Error"),
    429: ("TOO_MANY_REQUESTS", "Too Many Requests"),
    502: ("BAD_GATEWAY", "Bad Gateway"),
    503: ("SERVICE_UNAVAILABLE", "Service Unavailable"),
    504: ("GATEWAY_TIMEOUT", "Gateway Timeout"),
}


class ApiError(Exception):
    """One API failure: an HTTP status plus the JSON body that goes with it."""

    def __init__(self, status: int, issues: Sequence[str] = (), message: str | None = None) -> None:
        code, default = _code_for(status)
        super().__init__(message or default)
        self.status = status
        self.code = code
        self.message = message or default
        self.issues = tuple(issues)

    def body(self) -> dict[str, Any]:
        """The JSON body; `issues` only when there is something to say."""
        payload: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.issues:
            payload["issues"] = [{"message": text} for text in self.issues]
        return payload


def _code_for(status: int) -> tuple[str, str]:
    if status in _CODES:
        return _CODES[status]
    try:
        known = HTTPStatus(status)
    except ValueError:
        return ("ERROR", "Error")
    return (known.name, known.phrase)


def error_for_status(status: int) -> ApiError:
    """The plain error a fault rule injects for `status` (no issues)."""
    return ApiError(status)


def bad_request(issues: Sequence[str]) -> ApiError:
    """400 with one issue per invalid field."""
    return ApiError(400, issues)


def unauthorized() -> ApiError:
    """401: missing, unknown, revoked or expired token."""
    return ApiError(401)


def forbidden(issue: str) -> ApiError:
    """403 with the reason as the single issue."""
    return ApiError(403, [issue])


def not_found(issue: str) -> ApiError:
    """JSON 404 (code NOT_FOUND): the user or token does not exist."""
    return ApiError(404, [issue])
