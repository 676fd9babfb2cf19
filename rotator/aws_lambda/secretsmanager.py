"""Secrets Manager rotation: the four steps of one rotation, and the Secrets Manager clients.

An event `{"SecretId", "ClientRequestToken", "Step"}` names a secret that must be one the
config names (an `aws-secrets-manager` backend's `secret_id`; a `rotator:account` tag only
has to agree with that). Then the guards of AWS's rotation template (rotation enabled; the
token is a version of the secret), and the step maps onto one run whose id is the
ClientRequestToken. Each step does its own work only, whatever the number of backends:
    createSecret   create the MotherDuck token, put it as AWSPENDING (VersionId = token)
    setSecret      stage it in the account's other backends
    testSecret     run the checks on every read-back copy
    finishSecret   promote everywhere (AWSCURRENT new, AWSPREVIOUS old, no AWSPENDING),
                   then revoke the old token or start the grace
A step whose run is already past it succeeds without doing anything; a step that comes
before the previous one finished raises. A step whose run rolled back (or needs
attention) raises, after taking AWSPENDING off the version so the next rotation can start.

The clients (one per region) are made on first use and reused while the function stays
warm; the package's start-up reads the admin token through them too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from rotator.aws_lambda.errors import RotationError
from rotator.aws_lambda.events import RotationEvent
from rotator.config import AccountConfig
from rotator.engine.runrecord import Run, RunState
from rotator.engine.workflow import Engine
from rotator.errors import ConfigError

__all__ = [
    "PREVIOUS_STEP",
    "STEP_DONE",
    "STEP_UNTIL",
    "account_for_secret",
    "rotation_step",
]

log = structlog.get_logger("rotator.aws_lambda")

_SM_CLIENTS: dict[str | None, Any] = {}  # Secrets Manager clients by region (None: default)

# Where each step stops the run (createSecret also stages just the event's secret).
STEP_UNTIL: Mapping[str, RunState | None] = {
    "createSecret": RunState.STORED,
    "setSecret": RunState.STORED,
    "testSecret": RunState.VERIFIED,
    "finishSecret": None,
}
# How far a run must have got for the step to count as done (createSecret is judged by
# its AWSPENDING backend's progress as well).
STEP_DONE: Mapping[str, RunState] = {
    "createSecret": RunState.STORED,
    "setSecret": RunState.STORED,
    "testSecret": RunState.VERIFIED,
    "finishSecret": RunState.AWAITING_REVOKE,
}
PREVIOUS_STEP = {
    "setSecret": "createSecret",
    "testSecret": "setSecret",
    "finishSecret": "testSecret",
}
_FORWARD = list(RunState)[: list(RunState).index(RunState.COMPLETED) + 1]
_FAILED = (RunState.ROLLED_BACK, RunState.FAILED_NEEDS_ATTENTION)
_ARN_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")  # the random suffix AWS appends to a secret ARN


def _secretsmanager(secret_id: str | None = None) -> Any:
    """A Secrets Manager client in the region of `secret_id` when it is an ARN.

    Made once per region and reused while the function stays warm (botocore clients are
    thread-safe); `reset()` forgets them.
    """
    parts = (secret_id or "").split(":")
    region = parts[3] if len(parts) > 6 and parts[0] == "arn" and parts[3] else None
    client = _SM_CLIENTS.get(region)
    if client is None:
        from rotator.util.startup import aws_client

        client = _SM_CLIENTS[region] = aws_client("secretsmanager", region=region)
    return client


def _aws_call(what: str, call: Any, **kwargs: Any) -> dict[str, Any]:
    """One Secrets Manager call, its failure a RotationError naming `what`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer: dict[str, Any] = call(**kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise RotationError(f"{what}: {exc}") from exc
    return answer


def rotation_step(engine: Engine, event: RotationEvent) -> dict[str, Any]:
    """Run one of the four steps for `ClientRequestToken`; safe when Secrets Manager retries."""
    secret_id, token, step = event.secret_id, event.token, event.step
    sm = _secretsmanager(secret_id)
    meta = _aws_call(f"cannot describe secret {secret_id}", sm.describe_secret, SecretId=secret_id)
    account, label = account_for_secret(engine, meta)
    with structlog.contextvars.bound_contextvars(account=account.username, step=step, run_id=token):
        if not meta.get("RotationEnabled"):
            raise RotationError(f"secret {secret_id} does not have rotation enabled")
        run = engine.load_run(token)
        if run is not None and run.account.lower() != account.username.lower():
            raise RotationError(
                f"run {token} belongs to account {run.account}, not to {account.username}"
            )
        if run is not None and run.state in _FAILED:
            if run.state is RunState.ROLLED_BACK:
                _drop_pending(sm, meta["ARN"], token)
            raise _failed(step, run)
        versions = meta.get("VersionIdsToStages", {})
        if token not in versions:
            raise RotationError(f"version {token} of secret {secret_id} has no stage for rotation")
        if "AWSCURRENT" in versions[token]:
            if run is None or run.terminal or step != "finishSecret":
                state = run.state.value if run else "completed"
                return _report(step, token, state, "version already AWSCURRENT")
        elif "AWSPENDING" not in versions[token]:
            raise RotationError(f"version {token} of secret {secret_id} is not AWSPENDING")
        return _drive_step(
            engine, account, label, event, run, lambda: _drop_pending(sm, meta["ARN"], token)
        )


def _drive_step(
    engine: Engine,
    account: AccountConfig,
    label: str,
    event: RotationEvent,
    run: Run | None,
    drop_pending: Callable[[], None],
) -> dict[str, Any]:
    """Do the step's own work on run `event.token`, unless it is done or not yet due."""
    step, token = event.step, event.token
    record = engine.account_record(account.username)
    if record.active_run_id and record.active_run_id != token:
        other = engine.load_run(record.active_run_id)
        state = other.state.value if other else "unknown"
        raise RotationError(
            f"{account.username} has an unfinished run {record.active_run_id} ({state}); "
            "let it finish (or `rotator abort` it) before this rotation"
        )
    if run is None and step != "createSecret":
        raise RotationError(f"no run {token} for {account.username}: createSecret has not run")
    if run is not None:
        if run.state is RunState.COMPLETED or (step != "finishSecret" and _done(run, step, label)):
            return _report(step, token, run.state.value, f"{step} already done")
        before = PREVIOUS_STEP.get(step)
        if before is not None and not _done(run, before, label):
            raise RotationError(
                f"{step} before {before} finished: run {token} is at {run.state.value}"
            )
    outcome = engine.rotate(
        account.username,
        force=True,
        run_id=token,
        trigger="secretsmanager",
        until=STEP_UNTIL[step],
        stage_only=label if step == "createSecret" else None,
    )
    after = engine.load_run(token)
    if after is None:
        raise RotationError(f"{step}: run {token} was not recorded ({outcome.message})")
    if after.state in _FAILED:
        if after.state is RunState.ROLLED_BACK:
            drop_pending()
        raise _failed(step, after)
    if not _done(after, step, label):
        raise RotationError(f"{step} stopped at {after.state.value}: {outcome.message}")
    return _report(step, token, after.state.value, outcome.message)


def _done(run: Run, step: str, label: str) -> bool:
    """Has `run` got as far as `step` takes it?"""
    if run.state not in _FORWARD:
        return False
    if _FORWARD.index(run.state) >= _FORWARD.index(STEP_DONE[step]):
        return True
    progress = run.backends.get(label)
    return step == "createSecret" and progress is not None and progress.state == "staged"


def _failed(step: str, run: Run) -> RotationError:
    if run.state is RunState.ROLLED_BACK:
        return RotationError(
            f"{step} failed: rotation {run.run_id} was rolled back ({run.failure}); "
            "the old token is still current and valid"
        )
    return RotationError(
        f"{step} failed: rotation {run.run_id} needs attention ({run.failure}); "
        f"still to do: {'; '.join(run.remaining)}"
    )


def _drop_pending(sm: Any, secret_arn: str, token: str) -> None:
    """Take AWSPENDING off a failed rotation's version, so the next rotation is not blocked.

    Left alone when the version is AWSCURRENT (nothing pending about it). Replay-safe.
    """
    meta = _aws_call(f"cannot describe {secret_arn}", sm.describe_secret, SecretId=secret_arn)
    stages = meta.get("VersionIdsToStages", {}).get(token, [])
    if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
        _aws_call(
            f"cannot take AWSPENDING off version {token} of {secret_arn}",
            sm.update_secret_version_stage,
            SecretId=secret_arn,
            VersionStage="AWSPENDING",
            RemoveFromVersionId=token,
        )
        log.info("lambda.pending_dropped", version_id=token)


def account_for_secret(engine: Engine, meta: Mapping[str, Any]) -> tuple[AccountConfig, str]:
    """The configured account (and its backend label) that owns this secret.

    Only the config maps a secret: an `aws-secrets-manager` backend whose `secret_id` is
    the secret's name, ARN or partial ARN. A `rotator:account` tag may only agree with it
    (or choose among accounts that all name the secret); a tag alone maps nothing.
    """
    arn, name = str(meta.get("ARN", "")), str(meta.get("Name", ""))
    names = {arn, name, _ARN_SUFFIX.sub("", arn)} - {""}
    parts = arn.split(":")
    region = parts[3] if len(parts) > 6 else None
    owners: list[tuple[AccountConfig, str]] = []
    for account in engine.config.accounts:
        for cfg, backend in zip(account.backends, engine.backends(account), strict=True):
            secret_id = getattr(cfg, "secret_id", None)
            if cfg.type != "aws-secrets-manager" or secret_id not in names:
                continue
            # A bare name is only this secret in the backend's own region.
            if region and getattr(cfg, "resolved_region", region) != region:
                continue
            owners.append((account, backend.label))
    if not owners:
        raise ConfigError(
            f"secret {name or arn} belongs to no configured account: list it as the "
            "secret_id of an aws-secrets-manager backend in the config"
        )
    tags = {t["Key"]: t["Value"] for t in meta.get("Tags", [])}
    tagged = tags.get("rotator:account")
    if tagged is not None:
        owners = [o for o in owners if o[0].username.lower() == tagged.lower()]
        if not owners:
            raise ConfigError(
                f"secret {name or arn} is tagged rotator:account={tagged}, but the config "
                "names it for another account; fix the tag or the config"
            )
    if len(owners) > 1:
        accounts = ", ".join(o[0].username for o in owners)
        raise ConfigError(
            f"secret {name or arn} is named by several accounts ({accounts}); "
            "tag it rotator:account=<username> to say which"
        )
    return owners[0]


def _report(step: str, token: str, state: str, message: str) -> dict[str, Any]:
    log.info("lambda.step_done", step=step, run_id=token, state=state)
    return {"step": step, "run_id": token, "state": state, "message": message}
