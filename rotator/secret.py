"""A token secret that cannot be printed by accident.

`Secret` wraps the value so that `repr`, `str`, f-strings, logging and tracebacks show
`***`. Only code that writes the value to a backend, sends it over HTTP or runs a check
calls `reveal()`. Checkpoints keep `fingerprint(key)`, an HMAC, never the value.

Every `Secret` of at least `MIN_KNOWN_LENGTH` characters also adds its value to a
process-wide registry on construction; `rotator.log.RedactSecrets` reads it (through
`known_secrets()`) to scrub those values from every log line, even when code logged the
revealed string by mistake. `TOKEN_PATTERN` matches anything shaped like a MotherDuck
token (a JWT), known or not. This module imports nothing from the package.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Final

__all__ = [
    "MASK",
    "MIN_KNOWN_LENGTH",
    "SECRET_PATTERNS",
    "TOKEN_PATTERN",
    "Secret",
    "known_secrets",
    "known_secrets_since",
    "register",
    "registry_generation",
]

MASK: Final = "***"

MIN_KNOWN_LENGTH: Final = 8
"""Shorter values are not registered: scrubbing "abc" from every log line helps nobody."""

_B64URL: Final = r"[A-Za-z0-9_-]"
TOKEN_PATTERN: Final = rf"eyJ{_B64URL}+=*\.{_B64URL}+=*\.{_B64URL}*=*"
"""A JWT: three base64url parts, the first a JSON header (`{"` encodes as `eyJ`).

Generous on purpose: any lengths, optional padding, an empty signature (alg none).
"""

SECRET_PATTERNS: Final = (
    r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}",  # a Vault/OpenBao service, batch or recovery token
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # an AWS access key id
    r"https?://hooks\.slack\.com/\S+",  # a Slack incoming-webhook URL (a credential)
)
"""Other credentials worth masking even when nobody registered them (see `rotator.log`)."""

_registry: set[str] = set()
_in_order: list[str] = []  # the same values, oldest first: the generation indexes it
_registry_lock = threading.Lock()
_generation = 0


def _register(value: str) -> None:
    global _generation
    if len(value) < MIN_KNOWN_LENGTH or value in _registry:
        return
    with _registry_lock:
        if value not in _registry:
            _registry.add(value)
            _in_order.append(value)
            _generation += 1


def register(value: str) -> None:
    """Add a secret that is not a `Secret` (an env credential, a webhook URL) to the registry.

    Values shorter than `MIN_KNOWN_LENGTH` are ignored; so is surrounding whitespace.
    """
    _register(value.strip())


def registry_generation() -> int:
    """A number that changes whenever a new secret value is registered (cheap to poll).

    It is the count of registered values, so `known_secrets_since(g)` gives what came after.
    """
    return _generation


def known_secrets() -> tuple[int, frozenset[str]]:
    """Every registered secret value, with the generation it corresponds to."""
    with _registry_lock:
        return _generation, frozenset(_registry)


def known_secrets_since(generation: int) -> tuple[int, list[str]]:
    """The values registered after `generation`, and the generation they bring it to.

    Lets a reader keep its own index up to date in time proportional to what is new: a
    fleet rotation registers a few values per account, and rebuilding from every value
    ever registered on each change made a 10,000-account run quadratic.
    """
    with _registry_lock:
        return _generation, _in_order[max(generation, 0) :]


class Secret:
    """An opaque secret string whose printable forms are always masked."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value
        _register(value)

    def reveal(self) -> str:
        """Return the real value; call it only where the value must leave the process."""
        return self._value

    def fingerprint(self, key: bytes, *, length: int = 16) -> str:
        """HMAC-SHA256 of the value under `key`, hex, truncated to `length` chars.

        Safe to persist: without the key it cannot be used to test guesses, and the
        truncation keeps it short enough that it identifies without revealing.
        """
        mac = hmac.new(key, self._value.encode(), hashlib.sha256).hexdigest()
        return mac[:length]

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would write the value somewhere we do not control.
        raise TypeError("Secret values cannot be pickled")
