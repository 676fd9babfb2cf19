"""How one failed attempt of the MotherDuck client is classified.

Its one job is the vocabulary of failure: a `Failure` (the error to raise if we stop,
and whether a retry may follow), the Outcome-Unknown failure of a token-creating POST
(`unknown`), and the tables that decide it: which methods are idempotent, which statuses
are retried or come from a gateway, which transport errors mean the request was never
sent or will not get better by retrying. `rotator.motherduck.client` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from rotator.errors import BadRequest, Forbidden, MotherDuckError, NotFound, OutcomeUnknown

__all__ = [
    "GATEWAY_STATUSES",
    "IDEMPOTENT",
    "NEVER_SENT",
    "NOT_TRANSIENT",
    "RETRY_STATUSES",
    "STATUS_ERRORS",
    "Failure",
    "unknown",
]

IDEMPOTENT: Final = frozenset({"GET", "PUT", "DELETE"})
RETRY_STATUSES: Final = frozenset({502, 503, 504})
GATEWAY_STATUSES: Final = frozenset({502, 504})
NEVER_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
NOT_TRANSIENT: Final = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)
STATUS_ERRORS: Final[dict[int, type[MotherDuckError]]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
}


@dataclass(slots=True)
class Failure:
    """One failed attempt: the error to raise if we stop, and whether we may go on."""

    kind: type[MotherDuckError]
    message: str
    reason: str
    retry: bool = False
    wait: float | None = None
    cause: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self, attempts: int) -> MotherDuckError:
        tail = f" (gave up after {attempts} attempts)" if self.retry and attempts > 1 else ""
        return self.kind(self.message + tail, **self.extra)


def unknown(
    method: str,
    path: str,
    what: str,
    creating: tuple[str, str],
    cause: BaseException | None = None,
    *,
    in_flight: bool = False,
) -> Failure:
    username, name = creating
    message = (
        f"{method} {path}: {what}; token {name!r} for {username} may or may not exist, "
        "list tokens by name to find out"
    )
    extra = {"username": username, "token_name": name, "in_flight": in_flight}
    return Failure(OutcomeUnknown, message, "outcome_unknown", False, None, cause, extra)
