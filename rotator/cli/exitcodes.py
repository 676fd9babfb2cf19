"""Exit statuses of the `rotator` command and how an error or an outcome maps to one.

Exit statuses (one table, by exception family and run outcome):
    0  every account completed, adopted, not due, or waiting out its revoke grace;
       an abort rolled its run back; a revoke was confirmed
    1  a rotation failed and was rolled back (the old token is still valid), or a
       service could not be reached before anything changed
    2  usage, config or credential error; nothing was touched
    3  incomplete: the lease is held by another run, or the run was stopped (SIGINT,
       SIGTERM) at a step boundary or never started; the next `rotator rotate` resumes it
    4  needs attention: a rollback or revoke could not finish, or a run was stopped
       (config edit, unexpected error); the message says what is left
The same table holds for one account and for many (the most severe status wins).
A command that only reads, stopped by SIGINT/SIGTERM, exits 128 + the signal number.
Command output goes to stdout; logs go to stderr; a reader of either that goes away
never stops a run.
"""

from __future__ import annotations

from collections.abc import Sequence

from rotator.errors import (
    BackendCredentials,
    BackendError,
    BadRequest,
    ConfigError,
    Forbidden,
    LeaseHeld,
    MotherDuckError,
    NeedsAttention,
    NotFound,
    RotatorError,
    StateError,
    Unauthorized,
    WrongRoute,
)

__all__ = [
    "EXIT_ATTENTION",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_USAGE",
    "exit_code_for",
    "worst",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_ATTENTION = 0, 1, 2, 3, 4

# Most specific first: the first matching family decides the exit status.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, EXIT_USAGE),
    (Unauthorized, EXIT_USAGE),
    (Forbidden, EXIT_USAGE),
    (WrongRoute, EXIT_USAGE),
    (NotFound, EXIT_USAGE),
    (BadRequest, EXIT_USAGE),
    (StateError, EXIT_USAGE),
    (BackendCredentials, EXIT_USAGE),
    (LeaseHeld, EXIT_INCOMPLETE),
    (NeedsAttention, EXIT_ATTENTION),
    (MotherDuckError, EXIT_FAILED),
    (BackendError, EXIT_FAILED),
    (RotatorError, EXIT_FAILED),
)
_SEVERITY = (EXIT_ATTENTION, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_USAGE)


def exit_code_for(exc: BaseException) -> int:
    for family, code in EXIT_CODES:
        if isinstance(exc, family):
            return code
    return EXIT_FAILED


def worst(codes: Sequence[int]) -> int:
    """The exit status for several accounts: the most severe one any account had."""
    for code in _SEVERITY:
        if code in codes:
            return code
    return EXIT_OK
