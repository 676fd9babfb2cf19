"""Build an Engine from a Config: the state store, the clock and the MotherDuck client.

Shared by the CLI and the Lambda handler, which differ only in where the admin token
comes from, who owns the lease and where audit events go. Kept free of argparse and of
anything the Lambda cold start does not need.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rotator.config import Config
from rotator.engine.workflow import Engine
from rotator.errors import ConfigError
from rotator.events import EventSink
from rotator.netpolicy import insecure_reason
from rotator.secret import Secret
from rotator.state.store import StateStore, utcnow

if TYPE_CHECKING:
    from rotator.motherduck.client import MotherDuckClient

__all__ = ["build_engine", "clock_from_env", "make_store", "table_name"]


def build_engine(
    config: Config,
    admin_token: Callable[[Config], Secret],
    *,
    owner: str | None = None,
    audit_to_log: bool = False,
    extra_sinks: Sequence[EventSink] = (),
    make_client: Callable[[Config, Secret], MotherDuckClient] | None = None,
) -> Engine:
    """An engine whose MotherDuck client (and admin token) is created on first use.

    `make_client(config, admin_token)`: the client; by default a MotherDuckClient (httpx).
    """

    def client() -> MotherDuckClient:
        if make_client is not None:
            return make_client(config, admin_token(config))
        from rotator.util.startup import import_httpx

        import_httpx()
        from rotator.motherduck.client import MotherDuckClient

        return MotherDuckClient(
            config.motherduck.api_url,
            admin_token(config),
            timeout=config.motherduck.timeout.total_seconds(),
        )

    from rotator.log import register_known_secrets
    from rotator.ops.audit import event_sink

    register_known_secrets(config)  # the admin token, backend credentials, webhook URLs
    clock = clock_from_env()
    store = make_store(config, clock)
    engine = Engine(config, None, store, client_factory=client, clock=clock, owner=owner)
    engine.on_event = event_sink(
        config, engine, audit_to_log=audit_to_log, extra=tuple(extra_sinks)
    )
    return engine


def make_store(config: Config, clock: Callable[[], datetime] = utcnow) -> StateStore:
    if config.state.store == "file":
        from rotator.state.file import FileStore

        return FileStore(config.state_path, clock=clock)
    from rotator.state.dynamodb import DynamoDBStore

    endpoint = config.state.endpoint_url
    why = insecure_reason(endpoint) if endpoint else None
    if why:  # accepted by the config only with `insecure = true`; said on every run
        import structlog

        structlog.get_logger("rotator.state").warning("state.insecure_url", why=why)
    return DynamoDBStore(
        table_name(config),
        region=config.state.region,
        endpoint_url=config.state.endpoint_url,
        clock=clock,
        clock_skew=config.state.clock_skew,
    )


def table_name(config: Config) -> str:
    if not config.state.table:
        raise ConfigError('state.table: required when store = "dynamodb"')
    return config.state.table


def clock_from_env() -> Callable[[], datetime]:
    """`ROTATOR_NOW` (RFC 3339) pins "now", for drills and tests of grace and due dates."""
    pinned = os.environ.get("ROTATOR_NOW")
    if not pinned:
        return utcnow
    try:
        now = datetime.fromisoformat(pinned)
    except ValueError:
        raise ConfigError(f"ROTATOR_NOW: {pinned!r} is not an RFC 3339 timestamp") from None
    if now.tzinfo is None:
        raise ConfigError("ROTATOR_NOW: give a timezone, e.g. 2026-11-23T12:00:00+00:00")
    return lambda: now
