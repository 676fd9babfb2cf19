"""The Lambda handler's event shapes: what is a rotation, what is a schedule, what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.aws_lambda.events import EventError, RotationEvent, ScheduledEvent, parse_event

ROTATION = {"SecretId": "arn:x", "ClientRequestToken": "t-1", "Step": "createSecret"}


class TestParseEvent:
    def test_rotation_event(self) -> None:
        """All three fields make a rotation event; extra keys are ignored."""
        assert parse_event({**ROTATION, "RotationToken": "r"}) == RotationEvent(
            "arn:x", "t-1", "createSecret"
        )

    @pytest.mark.parametrize(
        "event",
        [
            {"source": "rotator.schedule"},
            {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
            {"source": "rotator.schedule", "accounts": ["a", "b"]},
            {"accounts": ["a"]},
        ],
    )
    def test_scheduled_shapes(self, event: dict[str, Any]) -> None:
        """EventBridge's scheduled event, the template's input and a manual account list."""
        parsed = parse_event(event)
        assert isinstance(parsed, ScheduledEvent)
        assert parsed.accounts == (tuple(event["accounts"]) if "accounts" in event else None)

    @pytest.mark.parametrize(
        ("event", "message"),
        [
            ({}, "neither a Secrets Manager rotation"),
            ({"detail": {}}, "keys: detail"),
            ({"SecretId": "s", "Step": "createSecret"}, "missing ClientRequestToken"),
            ({"Step": "setSecret"}, "missing SecretId, ClientRequestToken"),
            ({**ROTATION, "Step": "rotate"}, "event.Step: 'rotate' is not one of"),
            ({**ROTATION, "ClientRequestToken": 5}, "event.ClientRequestToken"),
            ({**ROTATION, "SecretId": " "}, "event.SecretId"),
            ({"accounts": "svc_x"}, "event.accounts: expected a non-empty list"),
            ({"accounts": []}, "event.accounts: expected a non-empty list"),
            ({"accounts": ["a", None]}, "event.accounts[1]"),
            ({"source": "aws.events"}, "event.detail-type"),
            ({"source": "aws.s3", "detail-type": "Scheduled Event"}, "event.source"),
            ("createSecret", "expected a JSON object, got str"),
        ],
    )
    def test_refused(self, event: Any, message: str) -> None:
        """Anything else is an EventError whose one line names the field at fault."""
        with pytest.raises(EventError) as caught:
            parse_event(event)
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)
