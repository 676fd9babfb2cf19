"""`python -m rotator.simulator` (and `rotator simulator ...`): run the simulator until signalled.

Start-up: load the state file (if any), seed the admin user and its token, create the
requested service accounts, install fault rules and latency, bind, then announce
readiness with ONE JSON line on stdout (`{"url": ..., "pid": ...}`), mirrored
atomically to `--ready-file`. SIGTERM or SIGINT stop it cleanly with exit status 0.
Exit status 2 means bad usage (nothing started), 1 a start-up failure (e.g. port taken).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rotator.simulator.faults import Faults, parse_rule
from rotator.simulator.model import Model
from rotator.simulator.persistence import StateFile
from rotator.simulator.records import OffsetClock
from rotator.simulator.server import SimulatorServer
from rotator.util.fsutil import atomic_write_bytes

__all__ = ["ADMIN_USERNAME", "build_parser", "main"]

ADMIN_USERNAME = "admin"
ADMIN_TOKEN_NAME = "simulator-admin"


class UsageError(Exception):
    """A flag's value is unusable; the message says which and why."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotator simulator",
        description="Local MotherDuck REST API simulator (a test tool; loopback only by default).",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--allow-non-loopback", action="store_true", help="permit a non-loopback --host")
    add("--port", type=int, default=8765, help="port to bind; 0 picks a free one (default 8765)")
    add(
        "--admin-token",
        metavar="SECRET",
        help="the admin user's token (default: generated); visible in `ps`, prefer the next two",
    )
    add("--admin-token-env", metavar="NAME", help="read the admin token from this env variable")
    add("--admin-token-in", metavar="PATH", type=Path, help="read the admin token from this file")
    add("--admin-token-file", metavar="PATH", type=Path, help="write the admin token here (0600)")
    add(
        "--service-account",
        metavar="NAME",
        action="append",
        default=[],
        help="create this service account (no tokens); repeatable",
    )
    add("--state-file", metavar="PATH", type=Path, help="load on start, save after each change")
    add("--latency", type=float, default=0.0, metavar="SECONDS", help="delay every API request")
    add("--latency-jitter", type=float, default=0.0, metavar="SECONDS", help="uniform extra delay")
    add("--seed", type=int, help="seed for the RNG behind jitter and fault probabilities")
    add("--fault", metavar="JSON", action="append", default=[], help="a fault rule; repeatable")
    add("--ready-file", metavar="PATH", type=Path, help="write the ready JSON here too")
    add("--quiet", action="store_true", help="do not log requests to stderr")
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _build_model(args: argparse.Namespace, clock: OffsetClock) -> tuple[Model, StateFile | None]:
    state_file = StateFile(args.state_file) if args.state_file else None
    try:
        model = (state_file.load(clock) if state_file else None) or Model(clock)
    except ValueError as exc:
        raise UsageError(f"--state-file: {exc}") from None
    for name in args.service_account:
        try:
            model.ensure_user(name)
        except ValueError as exc:
            raise UsageError(f"--service-account {name!r}: {exc}") from None
    return model, state_file


def _seed_admin(model: Model, args: argparse.Namespace) -> str:
    """Ensure the admin user and its token; return the token's secret."""
    model.ensure_user(ADMIN_USERNAME, admin=True)
    given = _given_admin_token(args)
    try:
        token = model.issue_token(ADMIN_USERNAME, ADMIN_TOKEN_NAME, secret=given)
    except ValueError as exc:
        raise UsageError(f"--admin-token: {exc}") from None
    if args.admin_token_file:
        atomic_write_bytes(args.admin_token_file, token.secret.encode(), mode=0o600)
    elif given is None:
        # Asked for nothing: a person is running it by hand and needs the token.
        sys.stderr.write(f"rotator simulator: admin token for user {ADMIN_USERNAME!r}: ")
        sys.stderr.write(token.secret + "\n")
    return token.secret


def _given_admin_token(args: argparse.Namespace) -> str | None:
    """The admin token from --admin-token, --admin-token-env or --admin-token-in, if any."""
    given = [x for x in (args.admin_token, args.admin_token_env, args.admin_token_in) if x]
    if len(given) > 1:
        raise UsageError("give at most one of --admin-token, --admin-token-env, --admin-token-in")
    if args.admin_token_env:
        value = os.environ.get(str(args.admin_token_env), "").strip()
        if not value:
            raise UsageError(f"--admin-token-env: {args.admin_token_env} is not set")
        return value
    if args.admin_token_in:
        try:
            value = str(args.admin_token_in.read_text()).strip()
        except OSError as exc:
            raise UsageError(f"--admin-token-in: cannot read it ({exc.strerror})") from None
        if not value:
            raise UsageError(f"--admin-token-in: {args.admin_token_in} is empty")
        return value
    return str(args.admin_token) if args.admin_token else None


def _build_faults(args: argparse.Namespace) -> Faults:
    faults = Faults(random.Random(args.seed))
    try:
        faults.set_latency(args.latency, args.latency_jitter)
    except ValueError as exc:
        raise UsageError(f"--latency/--latency-jitter: {exc}") from None
    for text in args.fault:
        try:
            faults.add(parse_rule(json.loads(text)))
        except ValueError as exc:
            raise UsageError(f"--fault {text!r}: {exc}") from None
    return faults


def _announce(server: SimulatorServer, ready_file: Path | None) -> None:
    line = json.dumps({"url": server.url, "pid": os.getpid()})
    if ready_file is not None:
        atomic_write_bytes(ready_file, (line + "\n").encode(), mode=0o644, durable=False)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _serve(server: SimulatorServer, ready_file: Path | None) -> None:
    """Announce readiness, then serve until SIGTERM/SIGINT (or the serving thread dies).

    The signal handlers go in before the ready line, so a supervisor that stops us the
    moment we are ready still gets a clean exit.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        _announce(server, ready_file)
        while not stop.wait(0.5) and thread.is_alive():
            pass
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; returns the exit status (0 after a clean SIGTERM/SIGINT)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        if not (_is_loopback(args.host) or args.allow_non_loopback):
            raise UsageError(
                f"--host {args.host}: not a loopback address; the simulator has no real "
                "security (its control API is unauthenticated). Add --allow-non-loopback "
                "if you really mean it"
            )
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port}: must be 0-65535")
        clock = OffsetClock()
        model, state_file = _build_model(args, clock)
        _seed_admin(model, args)
        faults = _build_faults(args)
    except UsageError as exc:
        sys.stderr.write(f"rotator simulator: {exc}\n")
        return 2
    try:
        server = SimulatorServer(
            (args.host, args.port),
            model=model,
            clock=clock,
            faults=faults,
            state_file=state_file,
            quiet=args.quiet,
        )
    except OSError as exc:
        sys.stderr.write(f"rotator simulator: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    server.persist()
    _serve(server, args.ready_file)
    return 0
