"""The run's lease as a backend sees it: its fencing number and a check to call before writing.

The engine hands each backend that has a `bind_lease(guard)` method a `LeaseGuard`
(optional: plugins without the method are fenced by the engine's own check before each
verb). A backend calls `guard(effect)` immediately before each write — the check re-reads
the lease from the state store, renews it, and raises LeaseLost when another run has taken
it over — and records `guard.fence` at the target (a sidecar field, a custom_metadata key,
a secret tag), so that a stale holder that passed its check and then stalled is refused by
the target itself: `guard.refuse_newer(seen)` raises when the target already carries a
higher fencing number than ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rotator.errors import LeaseLost

__all__ = ["LeaseGuard", "fence_of"]


@dataclass(frozen=True, slots=True)
class LeaseGuard:
    """`fence`: this run's fencing number; `check(effect)`: raise LeaseLost if it is stale."""

    fence: int
    check: Callable[[str], None]

    def __call__(self, effect: str) -> None:
        self.check(effect)

    def refuse_newer(self, seen: int, where: str) -> None:
        """Raise LeaseLost when `where` was last written under a newer lease than ours."""
        if seen > self.fence:
            raise LeaseLost(
                f"{where} was written under lease fence {seen}, newer than this run's "
                f"{self.fence}; another run took the account over, this run stops here"
            )


def fence_of(value: object) -> int:
    """A fencing number as stored at a target (str or int); 0 when absent or malformed."""
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0
