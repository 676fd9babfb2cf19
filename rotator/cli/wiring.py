"""From the parsed command line to an engine: the config file, the admin token, the probe.

Every command that touches accounts starts here; pydantic, httpx and the engine are
imported inside the functions, when a command needs them.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from rotator.errors import ConfigError
from rotator.secret import Secret

if TYPE_CHECKING:
    from rotator.config import Config
    from rotator.engine.workflow import Engine

__all__ = ["command_config", "make_engine", "probe_admin_token"]


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


def make_engine(config: Config) -> Engine:
    """The CLI's engine: the admin token from the environment (or Secrets Manager)."""
    from rotator.assembly import build_engine

    return build_engine(config, _admin_token)


def probe_admin_token(engine: Engine) -> None:
    """One cheap admin-only call (`GET /v1/active_accounts`) before anything is done.

    A broken admin token then fails the run the day it breaks (exit 2), not on the day a
    token is next due. Raises Unauthorized/Forbidden (2), ConfigError (2, no token) or
    TransportError (1).
    """
    engine.client.active_accounts()
