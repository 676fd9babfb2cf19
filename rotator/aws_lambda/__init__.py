"""AWS Lambda entry point: Secrets Manager rotation steps and scheduled runs, one engine.

`handler(event, context)` first checks the event's shape (rotator/aws_lambda/events.py): a
malformed event is refused before anything is read or written.

* Secrets Manager rotation: `{"SecretId", "ClientRequestToken", "Step"}`, one of the four
  steps (createSecret, setSecret, testSecret, finishSecret) of one run whose id is the
  ClientRequestToken, on a secret the config names; replay-safe
  (rotator/aws_lambda/secretsmanager.py says what each step does).
* A scheduled run (EventBridge, `{"source": "rotator.schedule"}`, `{"accounts": [...]}`):
  rotate every due account in the config, or those listed in `accounts`, and finish
  pending revokes. It never advances a run Secrets Manager is driving: such a run is
  reported as `in_progress`, except that the revoke it owes after the grace is finished
  (rotator/aws_lambda/scheduled_pass.py).

The engine is built on first use and reused while the function stays warm, and so are
the AWS clients; botocore is imported only when the event needs it (boto3 not at all:
`rotator.util.startup.aws_client`). MotherDuck reads (the admin-token probe, the EMF token
counts) go over botocore's urllib3; httpx is imported only for a call that writes
(rotator/aws_lambda/mdclient.py). The cyclic GC is paused during the cold start
(rotator/util/gcpause.py). Observability in Lambda: every run event is logged
as an `audit.recorded` line (the DynamoDB run record keeps its own `events` list),
notifications go out as on the command line, and after each invocation one CloudWatch
Embedded Metric Format line per account touched is printed on stdout (namespace
`Rotator`; see docs/operations.md).
"""

# ruff: noqa: E402  (structlog must be imported after import_structlog() below)
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rotator.util import gcpause

if os.environ.get("LAMBDA_TASK_ROOT"):  # the Lambda runtime's cold start, nothing else
    gcpause.pause()  # until the first invocation: rotator/util/gcpause.py

from rotator.util.startup import defer_import, import_structlog

# Lambda logs JSON only: nothing is drawn for a person, so structlog loads without rich
# (~40 ms of a cold start), and without executing asyncio, which only structlog's async
# loggers use. This runs before any other rotator module imports structlog.
defer_import("asyncio")
import_structlog(want_rich=False)

import structlog

from rotator.aws_lambda.errors import RotationError
from rotator.aws_lambda.events import EventError, RotationEvent, parse_event
from rotator.aws_lambda.scheduled_pass import scheduled, scheduled_names
from rotator.aws_lambda.secretsmanager import _SM_CLIENTS, _secretsmanager, rotation_step
from rotator.aws_lambda.secretsmanager import PREVIOUS_STEP as PREVIOUS_STEP
from rotator.aws_lambda.secretsmanager import STEP_DONE as STEP_DONE
from rotator.aws_lambda.secretsmanager import STEP_UNTIL as STEP_UNTIL
from rotator.aws_lambda.secretsmanager import account_for_secret as account_for_secret
from rotator.config import Config, load_config, parse_config
from rotator.engine.runrecord import AccountRecord
from rotator.engine.workflow import Engine
from rotator.envsettings import log_level
from rotator.errors import ConfigError
from rotator.ops.metrics import RunCollector
from rotator.secret import Secret

__all__ = ["EventError", "RotationError", "handler"]

log = structlog.get_logger("rotator.aws_lambda")

_ENGINE: Engine | None = None
_RUNS = RunCollector()  # what this invocation touched, for its EMF lines


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    from rotator import log as rlog

    try:
        level = log_level()
    except ConfigError as exc:
        rlog.configure("json", level="info")
        log.error("lambda.config_refused", error=str(exc))
        gcpause.resume()
        raise
    rlog.configure("json", level=level)
    request_id = getattr(context, "aws_request_id", None)
    with structlog.contextvars.bound_contextvars(aws_request_id=request_id):
        try:
            parsed = parse_event(event)
            engine = _engine()
        except EventError as exc:
            log.error("lambda.event_refused", error=str(exc))
            raise
        finally:
            # The cold start is over, whether or not the event was good or the engine built.
            gcpause.resume()
        _RUNS.drain()
        also: list[str] = []
        seen: dict[str, AccountRecord] = {}  # records a scheduled pass read, left unchanged
        try:
            if isinstance(parsed, RotationEvent):
                return rotation_step(engine, parsed)
            also = scheduled_names(engine, parsed)
            return scheduled(engine, also, seen=seen)
        finally:
            emit_metrics(engine, also, seen)


def emit_metrics(
    engine: Engine, accounts: list[str], seen: Mapping[str, AccountRecord] | None = None
) -> None:
    """Print EMF lines for `accounts` plus every account this invocation moved. Never raises.

    `seen`: records read moments ago by this invocation, of accounts it did not move.
    """
    from rotator.ops.metrics import emf_for

    touched, finished = _RUNS.drain()
    names = list(dict.fromkeys([*touched, *accounts]))
    known = {name: record for name, record in (seen or {}).items() if name not in touched}
    try:
        records = emf_for(engine, names, finished, known=known)
    except Exception as exc:  # metrics must never turn a rotation into a failed invocation
        log.warning("metrics.emf_failed", error=str(exc))
        return
    for record in records:
        sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _engine() -> Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = build_engine(load_lambda_config())
    return _ENGINE


def reset() -> None:
    """Forget the warm engine and AWS clients (tests; a config change)."""
    global _ENGINE
    _ENGINE = None
    _SM_CLIENTS.clear()


def load_lambda_config() -> Config:
    """`ROTATOR_CONFIG` is inline TOML or a path (relative to the function's code root)."""
    value = os.environ.get("ROTATOR_CONFIG", "rotator.toml")
    if "\n" in value or value.lstrip().startswith("["):
        # /tmp is the only writable directory in Lambda; relative paths land there.
        return parse_config(value, base_dir=Path("/tmp"), source="ROTATOR_CONFIG")  # noqa: S108
    path = Path(value)
    if not path.is_absolute():
        path = Path(os.environ.get("LAMBDA_TASK_ROOT", ".")) / path
    return load_config(path)


def build_engine(config: Config) -> Engine:
    from rotator.assembly import build_engine as assemble
    from rotator.aws_lambda.mdclient import lambda_client

    return assemble(
        config,
        admin_token,
        owner=_owner(),
        audit_to_log=True,
        extra_sinks=(_RUNS,),
        make_client=lambda_client,  # reads over urllib3 (botocore's), httpx only to write
    )


def _owner() -> str:
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "lambda")
    return f"{name}:{os.environ.get('AWS_LAMBDA_LOG_STREAM_NAME', os.getpid())}"


def admin_token(config: Config) -> Secret:
    """From `[motherduck] admin_token_secret_id` (Secrets Manager) or the env var."""
    secret_id = config.motherduck.admin_token_secret_id
    if secret_id:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            value = _secretsmanager().get_secret_value(
                SecretId=secret_id, VersionStage="AWSCURRENT"
            )
        except (BotoCoreError, ClientError) as exc:
            raise ConfigError(
                f"motherduck.admin_token_secret_id: cannot read {secret_id}: {exc}"
            ) from exc
        text = value.get("SecretString", "")
        if text.lstrip().startswith("{"):
            text = json.loads(text).get("motherduck_token", "")
        if not text:
            raise ConfigError(f"admin token secret {secret_id} holds no token")
        return Secret(text)
    name = config.motherduck.admin_token_env
    token = os.environ.get(name, "").strip()
    if not token:
        raise ConfigError(f"set {name} or [motherduck] admin_token_secret_id for the admin token")
    return Secret(token)
