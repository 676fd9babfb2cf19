"""What every check is: the Check protocol and the CheckContext it is given.

Kept apart from the built-in checks (checks.py) so that check families in their own
modules (sql.py, third-party plugins) depend on this small contract, not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rotator.secret import Secret


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check gets: whose token, which backend's copy, and the copy itself."""

    account: str
    backend: str
    token: Secret
    token_id: str | None


class Check(Protocol):
    name: str

    def run(self, ctx: CheckContext) -> None:
        """Pass silently or raise CheckFailed(check=self.name, backend=ctx.backend)."""
        ...
