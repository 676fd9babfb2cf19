"""From the parsed command line to an engine: the config file, the admin token, the probe.

Every command that touches accounts starts here; pydantic, httpx and the engine are
imported inside the functions, when a command needs them.

The probe runs in one of two ways.
- `probe_admin_token` asks and waits, so nothing starts before the answer. A dry run
  uses it. So does a `--processes` pass, whose parent asks once the workers are forked:
  each worker's engine then waits on a pipe for the verdict (rotator.ops.fleet_worker
  .ParentGate).
- `start_admin_probe` (one account, or a pass in this process) sends it from a thread.
  It hands the engine a gate that waits for the answer before a run's first checkpoint
  or side effect. The reads before them (the lease, the preflight listing and backend
  reads) overlap the probe's round trip, and a rejected token still stops every run
  with nothing written and nothing changed.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import TYPE_CHECKING

from rotator.errors import ConfigError
from rotator.secret import Secret
from rotator.util import gcpause

if TYPE_CHECKING:
    from rotator.config import Config
    from rotator.engine.workflow import Engine
    from rotator.motherduck.client import MotherDuckClient

__all__ = ["AdminProbe", "command_config", "make_engine", "probe_admin_token", "start_admin_probe"]


def command_config(args: argparse.Namespace) -> Config:
    from rotator.config import default_config_path, load_config

    return load_config(default_config_path(args.config))


def _admin_token(config: Config) -> Secret:
    name = config.motherduck.admin_token_env
    value = os.environ.get(name, "").strip()
    if not value and config.motherduck.admin_token_secret_id:
        # The Lambda config keeps the admin token in Secrets Manager; read it the same way.
        from rotator.aws_lambda import admin_token

        return admin_token(config)
    if not value:
        raise ConfigError(
            f"environment variable {name} is not set; it must hold a MotherDuck admin token "
            "([motherduck] admin_token_env names it)"
        )
    return Secret(value)


def make_engine(config: Config, *, startup_over: bool = True) -> Engine:
    """The CLI's engine: the admin token from the environment (or Secrets Manager).

    `startup_over=False`: the caller has more of start-up to do (imports above all) and
    resumes the collector itself (gcpause.resume) once it is done.
    """
    from rotator.assembly import build_engine

    engine = build_engine(config, _admin_token)
    if startup_over:
        gcpause.resume()  # start-up is over (the command's heavy imports are done)
    return engine


def probe_admin_token(engine: Engine) -> None:
    """One cheap admin-only call (`GET /v1/active_accounts`) before anything is done.

    A broken admin token then fails the run the day it breaks (exit 2), not on the day a
    token is next due. Raises Unauthorized/Forbidden (2), ConfigError (2, no token) or
    TransportError (1).
    """
    engine.client.active_accounts()


class AdminProbe:
    """The admin-token probe sent from a thread; calling it waits for the answer.

    A call returns once the probe succeeded and raises what the probe raised otherwise,
    every time it is called (the engine's gate, and the command after the pass).
    """

    def __init__(self, engine: Engine) -> None:
        self._sent = threading.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        # The client (the admin token read, httpx imported) is built here, before the
        # thread: a missing token fails at once, as with the plain probe. Waiting until
        # the request has gone out (a millisecond or two) keeps the probe the first
        # request sent.
        client = engine.client
        thread = threading.Thread(
            target=self._ask, args=(client,), name="rotator-admin-probe", daemon=True
        )
        thread.start()
        self._sent.wait()

    def _ask(self, client: MotherDuckClient) -> None:
        try:
            client.active_accounts(on_sent=self._sent.set)
        except BaseException as exc:  # handed to whoever waits; a thread has no caller
            self._error = exc
        finally:
            self._sent.set()  # also when it never went out (refused, no route)
            self._done.set()

    def __call__(self) -> None:
        self._done.wait()
        if self._error is not None:
            raise self._error


def start_admin_probe(engine: Engine) -> AdminProbe:
    """Send the probe now; the engine's first checkpoint or side effect waits for its answer.

    The command must call the returned probe once the engine is done (a pass that found
    nothing due never reached the gate), so that a rejected token is exit 2 either way.
    """
    probe = AdminProbe(engine)
    engine.effect_gate = probe
    return probe
