"""Fault rules and global latency: what goes wrong, on which route, how often.

A rule is `{"route": <route name or "*">, "action": ..., "times": N, "probability": p,
...}`. For each faultable request `Faults.decide()` walks the rules in the order they
were added: every firing `delay` rule adds its seconds, and the first firing rule of any
other action (`error`, `drop_before_commit`, `drop_after_commit`) decides what happens.
A rule "fires" when it matches, has `times` left and wins its probability draw; firing
uses up one of its `times`. All random draws come from one seedable RNG.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ACTIONS",
    "ROUTES",
    "Decision",
    "FaultRule",
    "Faults",
    "parse_rule",
    "retry_after_header",
]

ROUTES: Final = (
    "create_token",
    "list_tokens",
    "revoke_token",
    "create_user",
    "delete_user",
    "get_instances",
    "put_instances",
    "active_accounts",
    "whoami",
    "unknown",
)
ACTIONS: Final = ("error", "drop_before_commit", "drop_after_commit", "delay")
_FIELDS: Final = frozenset(
    {"route", "action", "times", "probability", "status", "retry_after", "seconds", "username"}
)


@dataclass(slots=True)
class FaultRule:
    """One rule; `times=None` means unlimited, `username` narrows it to one account."""

    route: str
    action: str
    times: int | None = None
    probability: float = 1.0
    status: int = 500
    retry_after: float = 1.0
    seconds: float = 0.0
    username: str | None = None
    id: int = 0
    fired: int = 0

    def matches(self, route: str, username: str | None) -> bool:
        if self.route not in ("*", route):
            return False
        if self.username is not None and (username or "").lower() != self.username.lower():
            return False
        return self.times is None or self.fired < self.times

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "route": self.route,
            "action": self.action,
            "times": self.times,
            "probability": self.probability,
            "fired": self.fired,
            "username": self.username,
        }
        if self.action == "error":
            out["status"] = self.status
            if self.status == 429:
                out["retry_after"] = self.retry_after
        if self.action == "delay":
            out["seconds"] = self.seconds
        return out


def _number(data: dict[str, Any], key: str, default: float, problems: list[str]) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{key}: must be a number")
        return default
    if value < 0:
        problems.append(f"{key}: must not be negative")
    return float(value)


def parse_rule(data: object) -> FaultRule:
    """Validate a rule's JSON; raises ValueError naming every bad field."""
    if not isinstance(data, dict):
        raise ValueError("fault rule: must be a JSON object")
    problems = [f"{key}: unknown field" for key in sorted(set(data) - _FIELDS)]
    route = data.get("route", "*")
    if route != "*" and route not in ROUTES:
        problems.append(f"route: must be '*' or one of {', '.join(ROUTES)}")
    action = data.get("action")
    if action not in ACTIONS:
        problems.append(f"action: must be one of {', '.join(ACTIONS)}")
    times = data.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        problems.append("times: must be a positive integer or null")
    probability = _number(data, "probability", 1.0, problems)
    if probability > 1:
        problems.append("probability: must be between 0 and 1")
    status = data.get("status", 500)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        problems.append("status: must be an integer between 400 and 599")
    retry_after = _number(data, "retry_after", 1.0, problems)
    seconds = _number(data, "seconds", 0.0, problems)
    if action == "delay" and "seconds" not in data:
        problems.append("seconds: is required for a delay")
    username = data.get("username")
    if username is not None and not isinstance(username, str):
        problems.append("username: must be a string")
    if problems:
        raise ValueError("; ".join(problems))
    assert isinstance(action, str)
    return FaultRule(
        route=route,
        action=action,
        times=times,
        probability=probability,
        status=status,
        retry_after=retry_after,
        seconds=seconds,
        username=username,
    )


def retry_after_header(seconds: float) -> str:
    """`Retry-After` value: whole seconds when integral, else the decimal (a test nicety)."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request: wait `delay` seconds, then apply `rule` (if any)."""

    delay: float
    rule: FaultRule | None


class Faults:
    """The live rule list and latency settings, shared by all request threads."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self.latency = 0.0
        self.jitter = 0.0

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.view() for rule in self._rules]

    def set_latency(self, seconds: float, jitter: float = 0.0) -> None:
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        with self._lock:
            self.latency, self.jitter = seconds, jitter

    def latency_view(self) -> dict[str, float]:
        return {"seconds": self.latency, "jitter": self.jitter}

    def decide(self, route: str, username: str | None) -> Decision:
        """Draw this request's fate: total delay (latency + delay rules) and the deciding rule."""
        with self._lock:
            delay = self.latency + (self._rng.uniform(0, self.jitter) if self.jitter else 0.0)
            chosen: FaultRule | None = None
            for rule in self._rules:
                if chosen is not None and rule.action != "delay":
                    continue
                if not rule.matches(route, username):
                    continue
                if rule.probability < 1 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.action == "delay":
                    delay += rule.seconds
                else:
                    chosen = rule
            return Decision(delay=delay, rule=chosen)
