"""Every exception rotator raises on purpose, in one tree.

    RotatorError                    anything rotator reports to a person (exit status by family)
    ├── ConfigError                 bad config file, field or CLI usage; nothing was touched
    ├── MotherDuckError             the MotherDuck REST API said no, or could not be reached
    │   ├── BadRequest              400: the request was invalid (carries each `issues` message)
    │   ├── Unauthorized            401: the admin token is wrong, revoked or expired
    │   ├── Forbidden               403: the token is valid but not allowed (e.g. not an org admin)
    │   ├── NotFound                404 with JSON code NOT_FOUND: no such user or token
    │   ├── WrongRoute              404 with a plain-text body: the URL is wrong (bad api_url)
    │   ├── RateLimited             429 after the retries ran out
    │   ├── ServerError             5xx after the retries ran out
    │   ├── TransportError          connection refused/reset, DNS, timeout, after the retries
    │   └── OutcomeUnknown          a token-creating POST may or may not have happened
    ├── BackendError                a secret backend failed (names the secret, never its value)
    │   ├── BackendConflict         someone else wrote the secret (CAS / foreign AWSPENDING)
    │   └── BackendCredentials      no usable credential for the backend (unset VAULT_TOKEN...)
    ├── CheckFailed                 a connectivity check rejected the new token
    ├── HookFailed                  a configured hook command failed
    ├── StateError                  the checkpoint/lease store cannot be read or written
    ├── LeaseHeld                   another run holds this account's lease
    │   └── LeaseLost               our lease was taken over; this run must stop writing
    └── NeedsAttention              a rollback could not finish; a person must act

Messages are one line, name the field or resource at fault and what to do, and never
contain a token secret. Bugs in rotator itself stay ordinary exceptions (RuntimeError etc).
This module imports nothing from the package so that everything can import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

__all__ = [
    "BackendConflict",
    "BackendCredentials",
    "BackendError",
    "BadRequest",
    "CheckFailed",
    "ConfigError",
    "Forbidden",
    "HookFailed",
    "LeaseHeld",
    "LeaseLost",
    "MotherDuckError",
    "NeedsAttention",
    "NotFound",
    "OutcomeUnknown",
    "RateLimited",
    "RotatorError",
    "ServerError",
    "StateError",
    "TransportError",
    "Unauthorized",
    "WrongRoute",
]


class RotatorError(Exception):
    """Base of every error rotator reports to a person."""


class ConfigError(RotatorError):
    """The configuration or the command line is invalid; nothing was changed."""

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class MotherDuckError(RotatorError):
    """The MotherDuck API refused a request or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        issues: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.issues = tuple(issues)


class BadRequest(MotherDuckError):
    """400: the API rejected the request body or parameters."""


class Unauthorized(MotherDuckError):
    """401: the token used is invalid, revoked or expired."""


class Forbidden(MotherDuckError):
    """403: the token is valid but lacks the role the call needs."""


class NotFound(MotherDuckError):
    """404 with a JSON NOT_FOUND body: the user or token does not exist."""


class WrongRoute(MotherDuckError):
    """404 with a plain-text body: no such route; the api_url is probably wrong."""


class RateLimited(MotherDuckError):
    """429 and the retry budget ran out."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, status=429, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(MotherDuckError):
    """5xx and the retry budget ran out (or the call was not safe to retry)."""


class TransportError(MotherDuckError):
    """The request did not get an HTTP answer (connect, read, timeout)."""


class OutcomeUnknown(MotherDuckError):
    """A token-creating POST may have succeeded; list tokens by `token_name` to find out.

    `in_flight` is True when no answer came back at all (a timeout, a dropped connection,
    a gateway's 502/504): the server may still be working on the request and commit it
    later, so one listing is not proof that no token exists.
    """

    def __init__(
        self, message: str, *, username: str, token_name: str, in_flight: bool = False
    ) -> None:
        super().__init__(message)
        self.username = username
        self.token_name = token_name
        self.in_flight = in_flight


class BackendError(RotatorError):
    """A secret backend failed; the message names the secret, never its value."""

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend


class BackendConflict(BackendError):
    """Another writer changed the secret since we read it (CAS mismatch, foreign pending)."""


class BackendCredentials(BackendError):
    """The backend's credential is missing or refused (an unset VAULT_TOKEN, no AWS keys).

    A usage error like a bad admin token: the command exits 2 and nothing was changed.
    """


class CheckFailed(RotatorError):
    """A connectivity check rejected the token read back from a backend."""

    def __init__(self, message: str, *, check: str, backend: str | None = None) -> None:
        super().__init__(message)
        self.check = check
        self.backend = backend


class HookFailed(RotatorError):
    """A configured hook command exited non-zero or timed out."""

    def __init__(self, message: str, *, hook: str) -> None:
        super().__init__(message)
        self.hook = hook


class StateError(RotatorError):
    """The checkpoint or lease store cannot be read or written."""


class LeaseHeld(RotatorError):
    """Another run holds the account's lease; try again after it expires or finishes."""

    def __init__(
        self, message: str, *, account: str, holder: str, expires_at: datetime | None
    ) -> None:
        super().__init__(message)
        self.account = account
        self.holder = holder
        self.expires_at = expires_at


class LeaseLost(LeaseHeld):
    """Our lease was taken over while we ran; we stopped before writing anything more."""

    def __init__(self, message: str) -> None:
        RotatorError.__init__(self, message)
        self.account = ""
        self.holder = ""
        self.expires_at = None


class NeedsAttention(RotatorError):
    """A run could not finish or undo itself; `remaining` lists what a person must do."""

    def __init__(self, message: str, *, remaining: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.remaining = tuple(remaining)
