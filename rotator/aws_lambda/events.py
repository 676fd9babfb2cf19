"""The event shapes the Lambda handler accepts, checked before anything is touched.

* A Secrets Manager rotation event: `SecretId`, `ClientRequestToken` and `Step` (one of
  createSecret, setSecret, testSecret, finishSecret), all three non-empty strings.
* A scheduled event: EventBridge's own (`"source": "aws.events"` with
  `"detail-type": "Scheduled Event"`), the template's input (`"source": "rotator.schedule"`),
  or a manual `{"accounts": [...]}`; any of them may carry `accounts`, a non-empty list of
  configured usernames, to limit the pass to those accounts.

Anything else (a console test with `{}`, a rotation event missing a field, `"accounts":
"svc_x"`) is refused with a one-line `EventError` naming the field, before the engine is
built or any service is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rotator.errors import RotatorError

__all__ = ["STEPS", "EventError", "RotationEvent", "ScheduledEvent", "parse_event"]

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
ROTATION_FIELDS = ("SecretId", "ClientRequestToken", "Step")
SCHEDULE_SOURCES = ("aws.events", "rotator.schedule")


class EventError(RotatorError):
    """The invocation's event is not one the handler serves; nothing was touched."""


@dataclass(frozen=True, slots=True)
class RotationEvent:
    secret_id: str
    token: str
    step: str


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    accounts: tuple[str, ...] | None  # None: every configured account


def parse_event(event: Any) -> RotationEvent | ScheduledEvent:
    """Classify and validate `event`; raises EventError with the field at fault."""
    if not isinstance(event, Mapping):
        raise EventError(f"event: expected a JSON object, got {type(event).__name__}")
    present = [f for f in ROTATION_FIELDS if f in event]
    if present:
        return _rotation(event, present)
    if "source" in event or "accounts" in event:
        return _scheduled(event)
    keys = ", ".join(sorted(map(str, event))) or "none"
    raise EventError(
        "event: neither a Secrets Manager rotation (SecretId, ClientRequestToken, Step) nor a "
        f'scheduled event ({{"source": "rotator.schedule"}}, {{"accounts": [...]}}); keys: {keys}'
    )


def _rotation(event: Mapping[str, Any], present: list[str]) -> RotationEvent:
    missing = [f for f in ROTATION_FIELDS if f not in present]
    if missing:
        raise EventError(
            f"event: a rotation event needs SecretId, ClientRequestToken and Step; "
            f"missing {', '.join(missing)}"
        )
    for name in ROTATION_FIELDS:
        value = event[name]
        if not isinstance(value, str) or not value.strip():
            raise EventError(f"event.{name}: expected a non-empty string")
    if event["Step"] not in STEPS:
        raise EventError(f"event.Step: {event['Step']!r} is not one of {', '.join(STEPS)}")
    return RotationEvent(event["SecretId"], event["ClientRequestToken"], event["Step"])


def _scheduled(event: Mapping[str, Any]) -> ScheduledEvent:
    source = event.get("source")
    if source is not None and source not in SCHEDULE_SOURCES:
        raise EventError(
            f"event.source: {source!r} is not a schedule (expected aws.events or rotator.schedule)"
        )
    if source == "aws.events" and event.get("detail-type") != "Scheduled Event":
        raise EventError(
            f"event.detail-type: {event.get('detail-type')!r} from aws.events is not "
            "'Scheduled Event'"
        )
    if "accounts" not in event:
        return ScheduledEvent(None)
    accounts = event["accounts"]
    if not isinstance(accounts, list) or not accounts:
        raise EventError("event.accounts: expected a non-empty list of usernames")
    for i, name in enumerate(accounts):
        if not isinstance(name, str) or not name.strip():
            raise EventError(f"event.accounts[{i}]: expected a username (a non-empty string)")
    return ScheduledEvent(tuple(accounts))
