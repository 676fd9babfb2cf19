"""One structured event per run state transition, for audit logs, metrics and notifications.

The engine calls every configured sink with a frozen `RunEvent` after the transition is
checkpointed. Events carry ids, names, states and timings — never a token secret. A sink
that fails is logged and ignored: observing a rotation must never break it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import structlog

__all__ = ["EventSink", "RunEvent", "fan_out"]

log = structlog.get_logger("rotator.events")


@dataclass(frozen=True, slots=True)
class RunEvent:
    """A run moved from one state to another."""

    at: str  # RFC 3339, the engine's clock
    account: str
    run_id: str
    from_state: str
    to_state: str
    trigger: str
    duration_seconds: float  # since the run started
    old_token_id: str | None
    new_token_id: str | None
    old_token_created_ts: str | None
    new_token_created_ts: str | None
    detail: str | None = None
    failure: str | None = None

    @property
    def name(self) -> str:
        return "run.transitioned"

    @property
    def terminal(self) -> bool:
        return self.to_state in ("completed", "rolled_back", "failed_needs_attention")

    def to_dict(self) -> dict[str, Any]:
        # Every field is an immutable scalar, so this equals `asdict` (which deep-copies each
        # leaf through copy.deepcopy) at a fraction of its cost: it runs at every transition.
        doc: dict[str, Any] = {"event": self.name}
        for name in _FIELD_NAMES:
            doc[name] = getattr(self, name)
        return doc


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RunEvent))


EventSink = Callable[[RunEvent], None]


def fan_out(sinks: Sequence[EventSink]) -> EventSink:
    """One sink that calls each of `sinks`, logging (not raising) their failures."""

    def emit(event: RunEvent) -> None:
        for sink in sinks:
            try:
                sink(event)
            except Exception as exc:  # a broken observer must not break the rotation
                log.warning(
                    "event.sink_failed", sink=getattr(sink, "__name__", repr(sink)), error=str(exc)
                )

    return emit
