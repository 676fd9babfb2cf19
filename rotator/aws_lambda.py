"""AWS Lambda entry point: Secrets Manager rotation steps and scheduled runs, one engine.

`handler(event, context)` recognises two event shapes:

* Secrets Manager rotation: `{"SecretId", "ClientRequestToken", "Step"}`. The guards come
  first, in the order of AWS's own rotation template (rotation enabled; the token is a
  version of the secret; already AWSCURRENT means done — except that an owed revoke is
  still finished; not AWSPENDING is an error), then the step maps onto one run whose id
  is the ClientRequestToken:
      createSecret   create the MotherDuck token, stage it as AWSPENDING
      setSecret      stage it in the account's other backends
      testSecret     run the checks on every read-back copy
      finishSecret   promote, then revoke the old token (or leave it for the grace)
  Each is a resume of the same run, so a retried step finds its work done.
* Anything else is a scheduled run (EventBridge): rotate every due account in the
  config, or those listed in `event["accounts"]`, and finish pending revokes.

The engine is built on first use and reused while the function stays warm; boto3 is
imported only when the event needs it. Observability in Lambda: every run event is logged
as an `audit.recorded` line (the DynamoDB run record keeps its own `events` list),
notifications go out as on the command line, and after each invocation one CloudWatch
Embedded Metric Format line per account touched is printed on stdout (namespace
`Rotator`; see docs/operations.md).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from rotator.config import AccountConfig, Config, load_config, parse_config
from rotator.errors import ConfigError, RotatorError
from rotator.metrics import RunCollector
from rotator.runrecord import RunState
from rotator.secret import Secret
from rotator.workflow import Engine, Outcome

__all__ = ["RotationError", "handler"]

log = structlog.get_logger("rotator.aws_lambda")

_ENGINE: Engine | None = None
_RUNS = RunCollector()  # what this invocation touched, for its EMF lines
STEP_UNTIL: Mapping[str, RunState | None] = {
    "createSecret": None,  # stage_only stops it after the AWSPENDING version
    "setSecret": RunState.STORED,
    "testSecret": RunState.VERIFIED,
    "finishSecret": None,
}
# How far a run must have got for the step to count as done (createSecret is judged by
# its AWSPENDING backend's progress instead).
STEP_DONE: Mapping[str, RunState] = {
    "setSecret": RunState.STORED,
    "testSecret": RunState.VERIFIED,
    "finishSecret": RunState.AWAITING_REVOKE,
}
_FORWARD = list(RunState)[: list(RunState).index(RunState.COMPLETED) + 1]


class RotationError(RotatorError):
    """A rotation step failed; Lambda reports it to Secrets Manager as a failed step."""


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    from rotator import log as rlog

    rlog.configure("json", level=os.environ.get("ROTATOR_LOG_LEVEL", "info"))
    request_id = getattr(context, "aws_request_id", None)
    with structlog.contextvars.bound_contextvars(aws_request_id=request_id):
        engine = _engine()
        _RUNS.drain()
        rotation = {"SecretId", "ClientRequestToken", "Step"} <= set(event)
        try:
            if rotation:
                return rotation_step(engine, event)
            return scheduled(engine, event)
        finally:
            also = [] if rotation else _scheduled_names(engine, event)
            emit_metrics(engine, also)


def emit_metrics(engine: Engine, accounts: list[str]) -> None:
    """Print EMF lines for `accounts` plus every account this invocation moved. Never raises."""
    from rotator.metrics import emf_for

    touched, finished = _RUNS.drain()
    names = list(dict.fromkeys([*touched, *accounts]))
    try:
        records = emf_for(engine, names, finished)
    except Exception as exc:  # metrics must never turn a rotation into a failed invocation
        log.warning("metrics.emf_failed", error=str(exc))
        return
    for record in records:
        sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _scheduled_names(engine: Engine, event: Mapping[str, Any]) -> list[str]:
    names = event.get("accounts") or [a.username for a in engine.config.accounts]
    return [str(n) for n in names]


def _engine() -> Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = build_engine(load_lambda_config())
    return _ENGINE


def reset() -> None:
    """Forget the warm engine (tests; a config change)."""
    global _ENGINE
    _ENGINE = None


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

    return assemble(config, admin_token, owner=_owner(), audit_to_log=True, extra_sinks=(_RUNS,))


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


def _secretsmanager() -> Any:
    import boto3

    return boto3.client("secretsmanager")


# -- Secrets Manager rotation ------------------------------------------------------------


def rotation_step(engine: Engine, event: Mapping[str, Any]) -> dict[str, Any]:
    """Run one of the four steps for `ClientRequestToken`; safe when Secrets Manager retries."""
    secret_id, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    if step not in STEP_UNTIL:
        raise RotationError(f"unknown rotation step {step!r} for secret {secret_id}")
    meta = _secretsmanager().describe_secret(SecretId=secret_id)
    if not meta.get("RotationEnabled"):
        raise RotationError(f"secret {secret_id} does not have rotation enabled")
    versions = meta.get("VersionIdsToStages", {})
    if token not in versions:
        raise RotationError(f"version {token} of secret {secret_id} has no stage for rotation")
    account, label = account_for_secret(engine, meta)
    with structlog.contextvars.bound_contextvars(account=account.username, step=step, run_id=token):
        if "AWSCURRENT" in versions[token]:
            return _finish_owed_revoke(engine, account, token)
        if "AWSPENDING" not in versions[token]:
            raise RotationError(f"version {token} of secret {secret_id} is not AWSPENDING")
        return _drive_step(engine, account, label, token, step)


def _drive_step(
    engine: Engine, account: AccountConfig, label: str, token: str, step: str
) -> dict[str, Any]:
    record = engine.account_record(account.username)
    run = engine.load_run(token)
    if record.active_run_id and record.active_run_id != token:
        other = engine.load_run(record.active_run_id)
        state = other.state.value if other else "unknown"
        raise RotationError(
            f"{account.username} has an unfinished run {record.active_run_id} ({state}); "
            "let it finish (or `rotator abort` it) before this rotation"
        )
    if step != "createSecret" and run is None:
        raise RotationError(f"no run {token} for {account.username}: createSecret has not run")
    if run is not None and run.terminal:
        return _report(step, token, run.state.value, f"run already {run.state.value}")
    outcome = engine.rotate(
        account.username,
        force=True,
        run_id=token,
        trigger="secretsmanager",
        until=STEP_UNTIL[step],
        stage_only=label if step == "createSecret" else None,
    )
    _raise_unless_done(engine, step, token, label, outcome)
    return _report(step, token, outcome.state or outcome.result, outcome.message)


def _raise_unless_done(engine: Engine, step: str, token: str, label: str, outcome: Outcome) -> None:
    """Raise (so Secrets Manager sees a failed step) unless the run got as far as the step."""
    if outcome.result in ("rolled_back", "needs_attention"):
        raise RotationError(f"{step} failed: {outcome.message}")
    run = engine.load_run(token)
    if run is None:
        raise RotationError(f"{step}: run {token} was not recorded")
    if step == "createSecret":
        progress = run.backends.get(label)
        if progress is None or progress.state not in ("staged", "promoted"):
            raise RotationError(f"createSecret did not stage {label}: {outcome.message}")
    elif run.state not in _FORWARD or _FORWARD.index(run.state) < _FORWARD.index(STEP_DONE[step]):
        raise RotationError(f"{step} stopped at {run.state.value}: {outcome.message}")


def _finish_owed_revoke(engine: Engine, account: AccountConfig, token: str) -> dict[str, Any]:
    """Already AWSCURRENT: done — unless this run still owes the old token's revoke."""
    run = engine.load_run(token)
    if run is None or run.terminal:
        return _report("finishSecret", token, "completed", "version already AWSCURRENT")
    outcome = engine.rotate(account.username, run_id=token, trigger="secretsmanager")
    if outcome.result in ("needs_attention", "incomplete"):
        raise RotationError(f"finishing the revoke owed by {token} failed: {outcome.message}")
    return _report("finishSecret", token, outcome.state or outcome.result, outcome.message)


def account_for_secret(engine: Engine, meta: Mapping[str, Any]) -> tuple[AccountConfig, str]:
    """The configured account (and its backend label) that owns this secret.

    Matched by the backend's `secret_id` (name or ARN), else by a `rotator:account` tag.
    """
    names = {meta.get("ARN"), meta.get("Name")}
    tags = {t["Key"]: t["Value"] for t in meta.get("Tags", [])}
    for account in engine.config.accounts:
        for cfg, backend in zip(account.backends, engine.backends(account), strict=True):
            if cfg.type == "aws-secrets-manager" and getattr(cfg, "secret_id", None) in names:
                return account, backend.label
    tagged = tags.get("rotator:account")
    if tagged:
        account = engine.config.account(tagged)
        for cfg, backend in zip(account.backends, engine.backends(account), strict=True):
            if cfg.type == "aws-secrets-manager":
                return account, backend.label
    raise ConfigError(
        f"secret {meta.get('Name')} belongs to no configured account: list it as an "
        "aws-secrets-manager backend or tag it rotator:account=<username>"
    )


def _report(step: str, token: str, state: str, message: str) -> dict[str, Any]:
    log.info("lambda.step_done", step=step, run_id=token, state=state)
    return {"step": step, "run_id": token, "state": state, "message": message}


# -- scheduled runs ----------------------------------------------------------------------


def scheduled(engine: Engine, event: Mapping[str, Any]) -> dict[str, Any]:
    """Rotate every due account (or `event["accounts"]`); one failure never stops the rest."""
    names = _scheduled_names(engine, event)
    results = []
    for name in names:
        try:
            outcome = engine.rotate(name, trigger="schedule")
            results.append(
                {"account": outcome.account, "result": outcome.result, "message": outcome.message}
            )
        except RotatorError as exc:
            results.append({"account": name, "result": "error", "message": str(exc)})
        log.info("lambda.account_done", **results[-1])
    failed = [r for r in results if r["result"] in ("rolled_back", "needs_attention", "error")]
    summary = {"results": results, "failed": len(failed)}
    if failed:
        # Raising marks the invocation failed, so CloudWatch alarms and EventBridge retries see it.
        raise RotationError(f"{len(failed)} of {len(results)} account(s) failed: {failed}")
    return summary
