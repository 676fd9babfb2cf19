"""The `/_sim/*` control API: seed data, read state, steer faults, latency and the clock.

No authentication: the simulator is a local test tool bound to loopback. Control
requests are never faulted, delayed or recorded. `handle` returns `(status, json)` or
None for an unknown control route (the server then answers the plain-text 404).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from rotator.simulator.apierror import ApiError, bad_request
from rotator.simulator.faults import Faults, parse_rule
from rotator.simulator.model import Model
from rotator.simulator.records import OffsetClock, Recorder, rfc3339
from rotator.simulator.validation import MALFORMED


class SimulatorServer(Protocol):
    """What the control routes steer (server.SimulatorServer is one; a protocol, so the
    server that dispatches to this module is not imported by it)."""

    model: Model
    clock: OffsetClock
    faults: Faults
    recorder: Recorder

    def persist(self) -> None: ...

__all__ = ["handle"]

Answer = tuple[int, Any]


def handle(server: SimulatorServer, method: str, path: str, body: object) -> Answer | None:
    """Serve one control request; ApiErrors become their JSON error answers."""
    handler = _ROUTES.get((method, path))
    if handler is None:
        return None
    try:
        return 200, handler(server, body)
    except ApiError as exc:
        return exc.status, exc.body()


def _object(body: object) -> dict[str, Any]:
    if body is MALFORMED:
        raise bad_request(["body: malformed JSON"])
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_request(["body: must be a JSON object"])
    return body


def _seconds(data: dict[str, Any], key: str, *, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request([f"{key}: must be a number of seconds"])
    return float(value)


def _health(server: SimulatorServer, body: object) -> Any:
    return {"status": "ok"}


def _state(server: SimulatorServer, body: object) -> Any:
    return {**server.model.state(), "clock_offset_seconds": server.clock.offset}


def _seed(server: SimulatorServer, body: object) -> Any:
    answer = server.model.seed(body)
    server.persist()
    return answer


def _requests(server: SimulatorServer, body: object) -> Any:
    return {"requests": server.recorder.entries(), **server.recorder.in_flight()}


def _clear_requests(server: SimulatorServer, body: object) -> Any:
    server.recorder.clear()
    return {"requests": [], **server.recorder.in_flight()}


def _add_fault(server: SimulatorServer, body: object) -> Any:
    data = _object(body)
    try:
        rule = parse_rule(data)
    except ValueError as exc:
        raise bad_request(str(exc).split("; ")) from None
    return server.faults.add(rule).view()


def _faults(server: SimulatorServer, body: object) -> Any:
    return {"faults": server.faults.rules()}


def _clear_faults(server: SimulatorServer, body: object) -> Any:
    server.faults.clear()
    return {"faults": []}


def _clock_view(server: SimulatorServer) -> dict[str, Any]:
    return {"now": rfc3339(server.clock()), "offset_seconds": server.clock.offset}


def _clock(server: SimulatorServer, body: object) -> Any:
    return _clock_view(server)


def _set_clock(server: SimulatorServer, body: object) -> Any:
    data = _object(body)
    if ("advance_seconds" in data) == ("offset_seconds" in data):
        raise bad_request(["body: give exactly one of advance_seconds, offset_seconds"])
    if "advance_seconds" in data:
        server.clock.advance(_seconds(data, "advance_seconds"))
    else:
        server.clock.set_offset(_seconds(data, "offset_seconds"))
    return _clock_view(server)


def _latency(server: SimulatorServer, body: object) -> Any:
    return server.faults.latency_view()


def _set_latency(server: SimulatorServer, body: object) -> Any:
    data = _object(body)
    seconds = _seconds(data, "seconds", default=0.0)
    jitter = _seconds(data, "jitter", default=0.0)
    try:
        server.faults.set_latency(seconds, jitter)
    except ValueError as exc:
        raise bad_request([f"seconds/jitter: {exc}"]) from None
    return server.faults.latency_view()


def _reset(server: SimulatorServer, body: object) -> Any:
    server.faults.clear()
    server.faults.set_latency(0.0, 0.0)
    server.recorder.clear()
    return {"faults": [], "latency": server.faults.latency_view(), "requests": []}


_ROUTES = {
    ("GET", "/_sim/health"): _health,
    ("GET", "/_sim/state"): _state,
    ("POST", "/_sim/seed"): _seed,
    ("GET", "/_sim/requests"): _requests,
    ("DELETE", "/_sim/requests"): _clear_requests,
    ("POST", "/_sim/faults"): _add_fault,
    ("GET", "/_sim/faults"): _faults,
    ("DELETE", "/_sim/faults"): _clear_faults,
    ("GET", "/_sim/clock"): _clock,
    ("POST", "/_sim/clock"): _set_clock,
    ("GET", "/_sim/latency"): _latency,
    ("POST", "/_sim/latency"): _set_latency,
    ("POST", "/_sim/reset"): _reset,
}
