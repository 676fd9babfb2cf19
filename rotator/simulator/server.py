"""The simulator's HTTP server: routing, faults, latency, request log and responses.

A `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive. Each `/v1/...` request and
`GET /_sim/whoami` is routed to a stable route name, delayed by the global latency and
any `delay` rules, possibly failed by a fault rule, answered by the `Model`, persisted
(when a state file is set), recorded (never bodies or headers) and logged to stderr
(never secrets). `/_sim/*` control routes (see `control.py`) skip faults and recording.
Every route refuses what a browser could send on another site's behalf: a foreign Host
(DNS rebinding), a foreign Origin, a body that is not JSON (see `_foreign`).
Unknown routes, and known paths with the wrong method, answer a plain-text 404.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from rotator.netpolicy import is_loopback
from rotator.simulator import control
from rotator.simulator.apierror import ApiError, error_for_status
from rotator.simulator.faults import FaultRule, Faults, retry_after_header
from rotator.simulator.model import Model
from rotator.simulator.persistence import StateFile
from rotator.simulator.records import OffsetClock, Recorder, rfc3339
from rotator.simulator.validation import MALFORMED

__all__ = ["Recorder", "SimulatorHandler", "SimulatorServer", "resolve"]

MAX_BODY: Final = 1 << 20
_NOT_FOUND: Final = (404, b"Not Found", "text/plain; charset=utf-8")


def resolve(method: str, path: str) -> tuple[str, dict[str, str]]:
    """Map a request to its route name and path parameters; `unknown` when nothing matches."""
    raw = path.split("/")[1:]
    if not raw or "" in raw:
        return "unknown", {}
    match (method, [unquote(part) for part in raw]):
        case ("POST", ["v1", "users"]):
            return "create_user", {}
        case ("DELETE", ["v1", "users", username]):
            return "delete_user", {"username": username}
        case ("POST", ["v1", "users", username, "tokens"]):
            return "create_token", {"username": username}
        case ("GET", ["v1", "users", username, "tokens"]):
            return "list_tokens", {"username": username}
        case ("DELETE", ["v1", "users", username, "tokens", token_id]):
            return "revoke_token", {"username": username, "token_id": token_id}
        case ("GET", ["v1", "users", username, "instances"]):
            return "get_instances", {"username": username}
        case ("PUT", ["v1", "users", username, "instances"]):
            return "put_instances", {"username": username}
        case ("GET", ["v1", "active_accounts"]):
            return "active_accounts", {}
        case ("GET", ["_sim", "whoami"]):
            return "whoami", {}
    return "unknown", {}


def call_model(
    model: Model, route: str, params: Mapping[str, str], bearer: str | None, body: object
) -> dict[str, Any]:
    """Run one routed request against the model; raises ApiError."""
    user = params.get("username", "")
    match route:
        case "create_token":
            return model.create_token(bearer, user, body)
        case "list_tokens":
            return model.list_tokens(bearer, user)
        case "revoke_token":
            return model.revoke_token(bearer, user, params["token_id"])
        case "create_user":
            return model.create_user(bearer, body)
        case "delete_user":
            return model.delete_user(bearer, user)
        case "get_instances":
            return model.get_instances(bearer, user)
        case "put_instances":
            return model.put_instances(bearer, user, body)
        case "active_accounts":
            return model.active_accounts(bearer)
        case "whoami":
            return model.whoami(bearer)
    raise RuntimeError(f"no handler for route {route}")


def decode_body(raw: bytes) -> object:
    """The JSON body; None when empty, `MALFORMED` when it does not parse."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return MALFORMED


class SimulatorServer(ThreadingHTTPServer):
    """The server object every handler thread shares (model, faults, recorder, state file)."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        *,
        model: Model,
        clock: OffsetClock,
        faults: Faults,
        state_file: StateFile | None = None,
        quiet: bool = False,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.model = model
        self.clock = clock
        self.faults = faults
        self.state_file = state_file
        self.quiet = quiet
        self.recorder = Recorder()
        super().__init__(address, SimulatorHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); we never need it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    @property
    def url(self) -> str:
        host = self.server_name
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server_port}"

    def persist(self) -> None:
        """Save the model if it changed; a failed write is reported, not fatal to the request."""
        if self.state_file is None:
            return
        try:
            self.state_file.save(self.model)
        except OSError as exc:
            sys.stderr.write(f"simulator: cannot write {self.state_file.path}: {exc}\n")

    def log(self, line: str) -> None:
        if not self.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client went away; nothing to report
        sys.stderr.write(f"simulator: error serving a request: {exc!r}\n")


class SimulatorHandler(BaseHTTPRequestHandler):
    """One connection; `_handle` runs once per request on it."""

    server: SimulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "rotator-simulator"
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients
    # would wait ~40 ms for the delayed ACK on every request.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own access log; `_log` writes ours."""

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        refused = self._foreign()
        if refused is not None:
            self.close_connection = True  # the body (if any) is not read
            error = ApiError(refused[0], [refused[1]], message="Request refused")
            self._send_json(refused[0], error.body())
            self._log(method, path, "refused", refused[0], started)
            return
        raw = self._read_body()
        if raw is None:
            self.close_connection = True  # the rest of the body is not read
            self._send_json(400, ApiError(400, ["body: too large or unreadable"]).body())
            return
        if path.startswith("/_sim/") and path != "/_sim/whoami":
            sent = self._control(method, path, raw)
            self._log(method, path, "control", sent, started)
            return
        route, params = resolve(method, path)
        # In flight from here until just before the answer goes out: within the time the
        # client waits for it, so a client's limit is never seen exceeded by a handler
        # that has answered but not yet returned.
        with self.server.recorder.serving():
            decision = self.server.faults.decide(route, params.get("username"))
            if decision.delay > 0:
                time.sleep(decision.delay)
            status, deliver = self._serve(route, params, raw, decision.rule)
            fault = None if decision.rule is None else decision.rule.action
            entry = {
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "ts": rfc3339(self.server.model.clock()),
                "fault": fault,
            }
            # Recorded before the answer (or the drop) goes out: a client that reads
            # /_sim/requests as soon as its call returns must find this request there.
            self.server.recorder.add(entry)
        deliver()
        self._log(method, path, route, status, started, fault)

    def _serve(
        self, route: str, params: dict[str, str], raw: bytes, rule: FaultRule | None
    ) -> tuple[int | None, Callable[[], None]]:
        """Do one faultable request: (the status to send or None for a drop, how to send it)."""
        if rule is not None and rule.action == "error":
            headers = {}
            if rule.status == 429:
                headers["Retry-After"] = retry_after_header(rule.retry_after)
            error = error_for_status(rule.status).body()
            return rule.status, lambda: self._send_json(rule.status, error, headers)
        if rule is not None and rule.action == "drop_before_commit":
            return None, self._drop
        if route == "unknown":
            status, payload, ctype = _NOT_FOUND
        else:
            try:
                body = decode_body(raw)
                answer = call_model(self.server.model, route, params, self._bearer(), body)
                status, payload = 200, json.dumps(answer).encode()
            except ApiError as exc:
                status, payload = exc.status, json.dumps(exc.body()).encode()
            except Exception:
                traceback.print_exc(file=sys.stderr)
                status, payload = 500, json.dumps(ApiError(500).body()).encode()
            ctype = "application/json"
            self.server.persist()
        if rule is not None and rule.action == "drop_after_commit":
            return None, self._drop
        return status, lambda: self._send(status, payload, ctype)

    def _control(self, method: str, path: str, raw: bytes) -> int:
        answer = control.handle(self.server, method, path, decode_body(raw))
        if answer is None:
            self._send(*_NOT_FOUND)
            return 404
        status, body = answer
        self._send_json(status, body)
        return status

    def _foreign(self) -> tuple[int, str] | None:
        """Why a request that a browser could have sent for another site is refused, if it is.

        The control routes hand out every secret, so a page must not reach them: a Host
        that is not this server (DNS rebinding), an Origin that is not this server (a
        cross-origin request) or a body that is not JSON (a form or text/plain "simple"
        request, sent without a CORS preflight) is refused on every route.
        """
        host = self.headers.get("Host")
        if host is not None and not self._is_self(urlsplit(f"//{host}").hostname):
            return 403, "Host: not this server (the simulator answers loopback names only)"
        origin = self.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            ours = parts.scheme == "http" and self._is_self(parts.hostname)
            if not ours or (parts.port or 80) != self.server.server_port:
                return 403, "Origin: cross-origin requests are refused"
        ctype = self.headers.get("Content-Type")
        if ctype is not None and ctype.split(";")[0].strip().lower() != "application/json":
            return 415, "Content-Type: send JSON (application/json)"
        return None

    def _is_self(self, hostname: str | None) -> bool:
        if not hostname:
            return False
        name = hostname.lower().rstrip(".")
        return name == str(self.server.server_name).lower() or is_loopback(name)

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY:
            return None
        try:
            return self.rfile.read(length)
        except OSError:
            return None

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                # Say so: a client that pooled the connection would otherwise send its next
                # request down a socket this server is about to close.
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _drop(self) -> None:
        """Close the socket without a byte of response: the client sees the connection die."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.connection.close()

    def _log(
        self,
        method: str,
        path: str,
        route: str,
        status: int | None,
        started: float,
        fault: str | None = None,
    ) -> None:
        elapsed = (time.monotonic() - started) * 1000
        suffix = f" fault={fault}" if fault else ""
        shown = "dropped" if status is None else str(status)
        self.server.log(f"{method} {path} {route} {shown} {elapsed:.1f}ms{suffix}")
