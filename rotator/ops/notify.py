"""Webhook and Slack notifications when a run ends, bounded and never in the rotation's way.

`Notifier` is an `EventSink`: on a terminal `RunEvent` (completed, rolled_back,
failed_needs_attention) it posts to the `[notifications]` targets for success
(`completed`, including a first managed token, "adopted") or failure. Bodies carry
account, run id, outcome, state, message/failure, token ids and timestamps — ids only,
and every text is passed through the log redactor as well, so a secret cannot slip out
even if some message carried one. Each target gets `1 + retries` attempts with a timeout
each and doubling backoff (capped) on transport errors, 429 and 5xx; a 4xx is final.
Each attempt ends by its timeout however slowly the server answers, and the answer's body
is never read. Failures are logged (`notification.failed`) and swallowed: a dead webhook
never fails a rotation. Webhook URLs are logged by scheme and host only (Slack URLs are
credentials).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from rotator.config import Notifications, NotificationTarget
from rotator.events import RunEvent

if TYPE_CHECKING:
    import httpx  # imported by `send`: a run that notifies nobody never loads httpx

__all__ = ["Notifier", "outcome_of", "slack_payload", "webhook_payload"]

log = structlog.get_logger("rotator.notify")

MAX_BACKOFF_SECONDS = 30.0
_SUCCESS = frozenset({"completed", "adopted"})
RemainingLookup = Callable[[str], Sequence[str]]


def outcome_of(event: RunEvent) -> str:
    """completed | adopted | rolled_back | needs_attention (for a terminal event)."""
    if event.to_state == "completed":
        return "completed" if event.old_token_id else "adopted"
    return "needs_attention" if event.to_state == "failed_needs_attention" else event.to_state


def _message(event: RunEvent, outcome: str, remaining: Sequence[str]) -> str:
    who = event.account
    if outcome == "completed":
        new, old = event.new_token_id, event.old_token_id
        return f"{who}: rotated to token {new}; old token {old} revoked"
    if outcome == "adopted":
        return f"{who}: first managed token {event.new_token_id} created and stored"
    if outcome == "rolled_back":
        return (
            f"{who}: rotation rolled back ({event.failure or event.detail or 'failed'}); "
            f"the old token {event.old_token_id or '-'} is still valid"
        )
    todo = "; ".join(remaining) or f"see `rotator history {who}`"
    return f"{who}: rotation needs attention ({event.failure or 'failed'}); still to do: {todo}"


def webhook_payload(event: RunEvent, remaining: Sequence[str] = ()) -> dict[str, Any]:
    """The generic JSON body: facts about the run, never a secret."""
    from rotator.log import RedactSecrets

    redact = RedactSecrets().redact
    outcome = outcome_of(event)
    finished = datetime.fromisoformat(event.at)
    started = finished - timedelta(seconds=event.duration_seconds)
    return {
        "event": "rotation.finished",
        "account": event.account,
        "run_id": event.run_id,
        "outcome": outcome,
        "success": outcome in _SUCCESS,
        "state": event.to_state,
        "message": redact(_message(event, outcome, remaining)),
        "failure": redact(event.failure) if event.failure else None,
        "remaining": [redact(r) for r in remaining],
        "trigger": event.trigger,
        "old_token_id": event.old_token_id,
        "new_token_id": event.new_token_id,
        "old_token_created_ts": event.old_token_created_ts,
        "new_token_created_ts": event.new_token_created_ts,
        "started_at": started.isoformat(),
        "finished_at": event.at,
        "duration_seconds": event.duration_seconds,
    }


def slack_payload(body: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (`text` fallback plus `blocks`) from a webhook body."""
    icon = ":white_check_mark:" if body["success"] else ":rotating_light:"
    text = f"{icon} rotator: {body['message']}"
    fields = [
        ("Account", body["account"]),
        ("Outcome", body["outcome"]),
        ("Old token", body["old_token_id"] or "-"),
        ("New token", body["new_token_id"] or "-"),
        ("Run", body["run_id"]),
        ("Finished", body["finished_at"]),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
        },
    ]
    if body["remaining"]:
        todo = "\n".join(f"• {item}" for item in body["remaining"])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*To do*\n{todo}"}})
    return {"text": text, "blocks": blocks}


class Notifier:
    """An EventSink that posts terminal run events to the configured targets."""

    __name__ = "notifier"

    def __init__(
        self,
        settings: Notifications,
        *,
        remaining_for: RemainingLookup | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._remaining_for = remaining_for
        self._transport = transport
        self._sleep = sleep

    def __call__(self, event: RunEvent) -> None:
        if not event.terminal:
            return
        success = outcome_of(event) in _SUCCESS
        targets = self.settings.on_success if success else self.settings.on_failure
        if not targets:
            return
        body = webhook_payload(event, self._remaining(event) if not success else ())
        for target in targets:
            payload = slack_payload(body) if target.type == "slack" else body
            self.send(target, payload, run_id=event.run_id)

    def _remaining(self, event: RunEvent) -> Sequence[str]:
        if self._remaining_for is None:
            return ()
        try:
            return self._remaining_for(event.run_id)
        except Exception:  # the lookup is a nicety; the notification still goes out
            return ()

    def send(self, target: NotificationTarget, payload: dict[str, Any], *, run_id: str) -> bool:
        """POST `payload` with bounded retries; True when a 2xx came back. Never raises."""
        where = _where(target.url)
        attempts = 1 + target.retries
        timeout = target.timeout.total_seconds()
        import httpx

        from rotator.util.httpbound import DeadlineTransport, deadline

        transport = self._transport if self._transport is not None else DeadlineTransport()
        with httpx.Client(timeout=timeout, transport=transport) as client:
            for attempt in range(1, attempts + 1):
                with deadline(timeout):
                    reason = self._post(client, target.url, payload)
                if reason is None:
                    log.info("notification.sent", target=where, kind=target.type, run_id=run_id)
                    return True
                final = attempt == attempts or reason.startswith("4")
                if final:
                    log.warning(
                        "notification.failed",
                        target=where,
                        kind=target.type,
                        run_id=run_id,
                        attempts=attempt,
                        reason=reason,
                    )
                    return False
                wait = target.backoff.total_seconds() * 2 ** (attempt - 1)
                # Jitter, so many rotators behind one dead webhook do not retry in step.
                wait = min(wait, MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)
                log.info(
                    "notification.retry_scheduled", target=where, attempt=attempt, reason=reason
                )
                self._sleep(wait)
        return False

    @staticmethod
    def _post(client: httpx.Client, url: str, payload: dict[str, Any]) -> str | None:
        """None on success, else a short reason; a 4xx other than 429 starts with "4"."""
        import httpx

        try:
            # The answer's body is never read: a webhook cannot make us hold an endless one.
            with client.stream("POST", url, json=payload) as response:
                pass
        except httpx.HTTPError as exc:
            return f"transport: {type(exc).__name__}"
        if response.is_success:
            return None
        status = response.status_code
        return f"status {status}" if status >= 500 or status == 429 else f"{status} refused"


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
