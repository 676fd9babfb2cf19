"""How one failed attempt of the MotherDuck client is classified.

Its one job is turning a failed attempt into a `Failure`: the error to raise if we stop
(a one-line message, server text cleaned of secrets) and whether a retry may follow. The
`Classifier` does it for a transport error, an error status or an oversized answer, with
the tables that decide it (which methods are idempotent, which statuses are retried or
come from a gateway, which transport errors mean the request was never sent or will not
get better by retrying); `unknown` is the Outcome-Unknown failure of a token-creating
POST. `rotator.motherduck.client` sends, schedules the retries and raises.

httpx is not imported here: the Lambda's reads (`rotator.motherduck.reads`, urllib3) are
classified by the same rules, through `no_answer` and a status answer of any client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from rotator.errors import (
    BadRequest,
    Forbidden,
    MotherDuckError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    WrongRoute,
)
from rotator.log import scrub
from rotator.motherduck import parse as answers
from rotator.motherduck.retry import RetryPolicy, retry_after
from rotator.secret import MASK, TOKEN_PATTERN, Secret

if TYPE_CHECKING:
    import httpx

__all__ = ["Answer", "Classifier", "Failure", "unknown"]

_IDEMPOTENT: Final = frozenset({"GET", "PUT", "DELETE"})
_RETRY_STATUSES: Final = frozenset({502, 503, 504})
_GATEWAY_STATUSES: Final = frozenset({502, 504})
_STATUS_ERRORS: Final[dict[int, type[MotherDuckError]]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
}
_TOKEN_RE: Final = re.compile(TOKEN_PATTERN)


class Answer(Protocol):
    """What the classifier reads of an error answer (an httpx.Response has it)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


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


class Classifier:
    """Turns one failed attempt of a client into a Failure, in one-line, secret-free words.

    `shown_url` is the api_url as messages may show it; the admin token is only used to
    mask it out of server-supplied text; `retry` caps a Retry-After wait.
    """

    __slots__ = ("_admin_token", "_retry", "_shown_url")

    def __init__(self, shown_url: str, admin_token: Secret, retry: RetryPolicy) -> None:
        self._shown_url = shown_url
        self._admin_token = admin_token
        self._retry = retry

    def transport_failure(
        self, method: str, path: str, exc: httpx.TransportError, creating: tuple[str, str] | None
    ) -> Failure:
        import httpx  # loaded already: `exc` is one of its errors

        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        not_transient = isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError))
        return self.no_answer(
            method, path, exc, type(exc).__name__, creating,
            never_sent=never_sent, not_transient=not_transient,
        )

    def no_answer(
        self,
        method: str,
        path: str,
        exc: BaseException,
        reason: str,
        creating: tuple[str, str] | None,
        *,
        never_sent: bool,
        not_transient: bool,
    ) -> Failure:
        """An attempt that got no answer: `never_sent` if the request surely did not go out
        (no connection), `not_transient` if retrying cannot help (a URL or request we
        cannot send). `reason` names the failure (httpx's exception names)."""
        if creating is not None and not (never_sent or not_transient):
            return unknown(
                method, path, f"{reason} after sending", creating, cause=exc, in_flight=True
            )
        retry = not not_transient and (never_sent or method in _IDEMPOTENT)
        detail = self._clean(str(exc)) or "no detail"
        message = f"{method} {path}: no answer from {self._shown_url} ({reason}: {detail})"
        return Failure(TransportError, message, reason, retry=retry, cause=exc)

    def status_failure(
        self,
        method: str,
        path: str,
        response: Answer,
        body: bytes,
        creating: tuple[str, str] | None,
    ) -> Failure:
        status = response.status_code
        code, text, issues = self._error_body(body)
        said = "; ".join(issues) or text or response.reason_phrase
        where = f"{method} {path}: {status}"
        extra: dict[str, Any] = {"status": status, "code": code, "issues": issues}
        if status == 429:
            after = retry_after(response.headers.get("Retry-After"))
            wait = None if after is None else min(after, self._retry.retry_after_cap)
            note = "" if after is None else f" (Retry-After {after:g}s)"
            extra = {"code": code, "issues": issues, "retry_after": after}
            return Failure(
                RateLimited, f"{where} rate limited{note}", "429", True, wait, None, extra
            )
        if status >= 500 and creating is not None:
            # A gateway's 502/504 means the origin may still be working on the request.
            in_flight = status in _GATEWAY_STATUSES
            return unknown(method, path, f"{status} {said}", creating, in_flight=in_flight)
        retry = status in _RETRY_STATUSES and method in _IDEMPOTENT
        if status == 404 and code != "NOT_FOUND":
            said = f"no such route (not an API error); is the api_url {self._shown_url} wrong?"
            kind: type[MotherDuckError] = WrongRoute
        elif status == 401:
            said = "the admin token was rejected (invalid, revoked or expired); check it"
            kind = Unauthorized
        else:
            kind = _STATUS_ERRORS.get(status, ServerError if status >= 500 else MotherDuckError)
        return Failure(kind, f"{where} {said}", str(status), retry, None, None, extra)

    def too_large(
        self, method: str, path: str, exc: ValueError, creating: tuple[str, str] | None
    ) -> Failure:
        """The answer went past the size cap (`rotator.util.httpbound.TooLarge` or alike)."""
        if creating is not None:
            return unknown(method, path, str(exc), creating)
        message = f"{method} {path}: {exc} (is the api_url {self._shown_url} right?)"
        return Failure(MotherDuckError, message, "too_large")

    def _error_body(self, content: bytes) -> tuple[str | None, str, list[str]]:
        """(code, message, issue messages) from an error body; (None, "", []) if not JSON."""
        try:
            body = answers.load_json(content)
        except answers.Malformed:
            return None, "", []
        if not isinstance(body, dict):
            return None, "", []
        code, message, issues = body.get("code"), body.get("message"), body.get("issues")
        texts = [
            self._clean(issue["message"])
            for issue in (issues if isinstance(issues, list) else [])
            if isinstance(issue, dict) and isinstance(issue.get("message"), str)
        ]
        return (
            code if isinstance(code, str) else None,
            self._clean(message) if isinstance(message, str) else "",
            [text for text in texts if text],
        )

    def _clean(self, text: str) -> str:
        """Server-supplied text made safe for a message: one line, no secrets, then short."""
        admin = self._admin_token.reveal()
        if admin:
            text = text.replace(admin, MASK)
        return scrub(" ".join(_TOKEN_RE.sub(MASK, text).split()), 300, keep="head")
