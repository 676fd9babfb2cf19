"""Notifications: payloads without secrets, Slack's shape, bounded retries that never raise."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from rotator.config import Notifications, NotificationTarget
from rotator.events import RunEvent
from rotator.ops.notify import Notifier, slack_payload, webhook_payload

SECRET = "eyJhbGciOiJIUzI1NiJ9.eyJ1IjoieCJ9.c2lnbmF0dXJl"


def event(to_state: str, *, old: str | None = "old-id", failure: str | None = None) -> RunEvent:
    return RunEvent(
        at="2026-11-23T12:00:10+00:00",
        account="svc_a",
        run_id="run-1",
        from_state="revoking",
        to_state=to_state,
        trigger="cli",
        duration_seconds=10.0,
        old_token_id=old,
        new_token_id="new-id",
        old_token_created_ts="2026-10-01T00:00:00+00:00",
        new_token_created_ts="2026-11-23T12:00:01+00:00",
        failure=failure,
    )


def target(kind: str = "webhook", retries: int = 3) -> NotificationTarget:
    return NotificationTarget(
        type=kind, url="http://hooks.test/x", retries=retries, backoff=timedelta(seconds=1)
    )


class Recorder:
    def __init__(self, *statuses: int | Exception) -> None:
        self.statuses = list(statuses)
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        status = self.statuses.pop(0) if self.statuses else 200
        if isinstance(status, Exception):
            raise status
        return httpx.Response(status)


def notifier(recorder: Recorder, sleeps: list[float], **targets: tuple[NotificationTarget, ...]) -> Notifier:
    return Notifier(
        Notifications(**targets),
        transport=httpx.MockTransport(recorder),
        sleep=sleeps.append,
        remaining_for=lambda run_id: ["revoke token old-id by hand"],
    )


class TestPayloads:
    def test_webhook_body_facts(self) -> None:
        """The body names account, run, outcome, state, token ids and times."""
        body = webhook_payload(event("completed"))
        assert body["outcome"] == "completed" and body["success"] is True
        assert body["state"] == "completed" and body["run_id"] == "run-1"
        assert body["old_token_id"] == "old-id" and body["new_token_id"] == "new-id"
        assert body["started_at"] == "2026-11-23T12:00:00+00:00"
        assert body["finished_at"] == "2026-11-23T12:00:10+00:00"

    def test_first_token_is_adopted(self) -> None:
        """A completed run with no old token reports `adopted`, still a success."""
        body = webhook_payload(event("completed", old=None))
        assert body["outcome"] == "adopted" and body["success"] is True

    def test_token_shaped_text_is_redacted(self) -> None:
        """Even a failure text carrying a token-shaped string goes out masked."""
        body = webhook_payload(event("rolled_back", failure=f"check said {SECRET}"))
        assert SECRET not in str(body) and "***" in body["failure"]

    def test_slack_shape(self) -> None:
        """Slack gets `text` plus section blocks with mrkdwn fields, and the to-do list."""
        body = webhook_payload(event("failed_needs_attention", failure="x"), ["do this"])
        payload = slack_payload(body)
        assert set(payload) == {"text", "blocks"} and "svc_a" in payload["text"]
        assert all(block["type"] == "section" for block in payload["blocks"])
        fields = payload["blocks"][1]["fields"]
        assert {"type": "mrkdwn", "text": "*Account*\nsvc_a"} in fields
        assert "do this" in payload["blocks"][-1]["text"]["text"]


class TestSending:
    def test_retries_5xx_then_succeeds(self) -> None:
        """500 then 200: two attempts, one backoff wait."""
        rec, sleeps = Recorder(500, 200), []
        notifier(rec, sleeps, on_success=(target(),))(event("completed"))
        assert len(rec.bodies) == 2 and len(sleeps) == 1

    def test_gives_up_after_bounded_attempts_without_raising(self) -> None:
        """Always 503: exactly 1 + retries attempts, capped waits, and no exception."""
        rec, sleeps = Recorder(*[503] * 10), []
        notifier(rec, sleeps, on_failure=(target(retries=2),))(event("rolled_back"))
        assert len(rec.bodies) == 3 and len(sleeps) == 2
        assert sleeps[0] <= 1.0 and sleeps[1] <= 2.0

    def test_client_errors_are_final(self) -> None:
        """A 404 is not retried."""
        rec, sleeps = Recorder(404), []
        notifier(rec, sleeps, on_failure=(target(),))(event("rolled_back"))
        assert len(rec.bodies) == 1 and sleeps == []

    def test_transport_errors_are_retried(self) -> None:
        """A refused connection is retried like a 5xx."""
        rec, sleeps = Recorder(httpx.ConnectError("refused"), 200), []
        notifier(rec, sleeps, on_success=(target("slack"),))(event("completed"))
        assert len(rec.bodies) == 2

    @pytest.mark.parametrize(
        ("state", "expected"), [("completed", "success"), ("rolled_back", "failure"), ("failed_needs_attention", "failure")]
    )
    def test_routing(self, state: str, expected: str) -> None:
        """Success goes to on_success only, failures to on_failure only."""
        ok, bad, sleeps = Recorder(), Recorder(), []
        sink = Notifier(
            Notifications(
                on_success=(NotificationTarget(type="webhook", url="http://ok.test/"),),
                on_failure=(NotificationTarget(type="webhook", url="http://bad.test/"),),
            ),
            transport=httpx.MockTransport(lambda r: (ok if r.url.host == "ok.test" else bad)(r)),
            sleep=sleeps.append,
        )
        sink(event(state))
        assert (len(ok.bodies), len(bad.bodies)) == ((1, 0) if expected == "success" else (0, 1))

    def test_non_terminal_events_are_ignored(self) -> None:
        """Intermediate transitions send nothing."""
        rec, sleeps = Recorder(), []
        notifier(rec, sleeps, on_success=(target(),), on_failure=(target(),))(event("promoted"))
        assert rec.bodies == []

    def test_failure_body_lists_remaining(self) -> None:
        """A needs-attention notification carries what a person must still do."""
        import json

        rec, sleeps = Recorder(), []
        notifier(rec, sleeps, on_failure=(target(),))(event("failed_needs_attention", failure="x"))
        assert json.loads(rec.bodies[0])["remaining"] == ["revoke token old-id by hand"]
