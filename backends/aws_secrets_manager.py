"""AWS Secrets Manager backend: one secret per account, rotated with staging labels.

One run's version V is the run's ClientRequestToken (the run id when it is a UUID, as
in a Lambda rotation; else a uuid5 of it), so every replay addresses the same version:

    stage     PutSecretValue(V, AWSPENDING)           consumers still read the old AWSCURRENT
    promote   UpdateSecretVersionStage AWSCURRENT: old -> V   (AWS moves AWSPREVIOUS to old)
              UpdateSecretVersionStage AWSPENDING: off V; TagResource rotator:* = V's token
    rollback  if V is AWSCURRENT: AWSCURRENT V -> previous; AWSPENDING off V

Each verb reads VersionIdsToStages first and does only what is missing, so a replay after
a SIGKILL anywhere finishes the job. A consumer reading AWSCURRENT sees the whole old or
the whole new value: each label move is one API call. Values are always read with an
explicit VersionStage/VersionId (moto's default read lags a label move). Tags are per
secret, so the token id they carry (needed for raw values) is trusted only for the
version named beside it. boto3 is imported when the first call is made.

Fencing (I4): the tag `rotator:fence` holds the highest lease fencing number any run
wrote the secret under. Each verb reads it (with the labels, in the same DescribeSecret)
right before its writes, refuses (LeaseLost) when it is newer than the run's own lease,
and raises it to ours otherwise; the version id is the run's ClientRequestToken, so a
stale put can only ever address its own run's version. A run that stalled past its lease
therefore cannot re-attach AWSPENDING or move AWSCURRENT once its successor (or an
`rotator abort`) has touched the secret.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from backends import _aws_errors as aws_errors
from backends._aws_config import TYPE, SecretsManagerSettings
from backends._aws_stages import (
    _FIELDS,
    CURRENT,
    FENCE_TAG,
    PENDING,
    PREVIOUS,
    _group_tags,
    _Snapshot,
    version_id_for,
)
from backends._lease import LeaseGuard, fence_of
from backends.base import (
    CheckedTable,
    ModelOnDemand,
    Receipt,
    StoredToken,
    TokenRecord,
    decode_value,
)
from backends.base import encode_value as _encode
from rotator.errors import BackendConflict, BackendCredentials, BackendError, ConfigError
from rotator.netpolicy import insecure_reason

if TYPE_CHECKING:
    from botocore.exceptions import BotoCoreError, ClientError

    from backends.models.aws import SecretsManagerConfig

__all__ = ["SecretsManagerBackend", "SecretsManagerConfig", "version_id_for"]

log = structlog.get_logger("backends.aws_secrets_manager")


def __getattr__(name: str) -> Any:
    """`SecretsManagerConfig` (pydantic) is imported on first use, not with this module."""
    if name == "SecretsManagerConfig":
        from backends.models.aws import SecretsManagerConfig

        return SecretsManagerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_GONE = ("ResourceNotFoundException",)  # no such secret, version or value: answer None


class SecretsManagerBackend:
    """One AWS Secrets Manager secret holding one account's MotherDuck token."""

    type: ClassVar[str] = TYPE
    # A pydantic model: imported when first read, not with this module (backends/models/aws.py).
    Config = ModelOnDemand("backends.models.aws", "SecretsManagerConfig")

    def __init__(
        self,
        config: SecretsManagerConfig | SecretsManagerSettings,
        *,
        account: str = "",
        client: Any = None,
    ):
        # The model and a checked table give the same plain settings: the same backend.
        self._cfg = (
            config if isinstance(config, SecretsManagerSettings)
            else SecretsManagerSettings.of(config)
        )
        self._account = account
        self._secret_id = config.secret_id
        self._region = config.resolved_region
        self._client_obj: Any = client
        self._lease: LeaseGuard | None = None

    def bind_lease(self, guard: LeaseGuard | None) -> None:
        """Fence every later write with the run's lease (see the module docstring)."""
        self._lease = guard

    def _undo_if_fenced_out(self, version: str, before: str | None, previous: str | None) -> None:
        """After moving AWSCURRENT: if a newer lease wrote the secret meanwhile, move it back.

        Label moves have no condition AWS could check against our fence, so a move that was
        in flight while a successor (or `rotator abort`) took over is found by reading the
        fence tag again right after it, and undone before this run stops.
        """
        if self._lease is None:
            return
        snap = self._existing()
        if fence_of(snap.tags.get(FENCE_TAG)) <= self._lease.fence:
            return
        if before is not None and CURRENT in snap.labels(version):
            self._move(CURRENT, to=before, away_from=version)
            # AWS moved AWSPREVIOUS along with each move: put it back where it was too.
            if previous is not None:
                self._move(PREVIOUS, to=previous, away_from=version)
            else:
                self._move(PREVIOUS, to=None, away_from=version)
            log.warning("backend.stale_move_undone", backend=self.label, version_id=version)
        self._fence_target(snap)  # raises LeaseLost

    def _fence_target(self, snap: _Snapshot) -> None:
        """Refuse when the secret carries a newer lease fence than ours; else record ours."""
        if self._lease is None:
            return
        seen = fence_of(snap.tags.get(FENCE_TAG))
        self._lease.refuse_newer(seen, f"secret {self._secret_id}")
        if seen < self._lease.fence:
            self._tag({FENCE_TAG: str(self._lease.fence)})

    @classmethod
    def from_config(cls, config: Any, *, account: str, base_dir: Path) -> SecretsManagerBackend:
        if isinstance(config, CheckedTable):  # proved valid by the fast loader: no pydantic
            return cls(SecretsManagerSettings.from_table(config), account=account)
        from backends.models.aws import SecretsManagerConfig

        if isinstance(config, Mapping):
            config = SecretsManagerConfig.model_validate(config)
        if not isinstance(config, SecretsManagerConfig):
            raise ConfigError(f"type: expected an {TYPE} table, got {type(config).__name__}")
        return cls(config, account=account)

    @property
    def label(self) -> str:
        return f"{TYPE}:{self._region}:{self._secret_id}"

    # -- the Backend verbs ---------------------------------------------------------------

    def read_current(self) -> StoredToken | None:
        """What a consumer reading AWSCURRENT gets; None if there is no current value yet.

        Raises BackendError when the secret is missing (unless create_if_missing) or
        cannot be read.
        """
        snap = self._snapshot() if self._cfg.create_if_missing else self._existing()
        if snap is None or snap.holder(CURRENT) is None:
            return None
        answer = self._try("GetSecretValue", _GONE, SecretId=self._secret_id, VersionStage=CURRENT)
        if answer is None:
            return None
        version = str(answer["VersionId"])
        return decode_value(self._text(answer, version), version=version, **snap.trusted(version))

    def read_staged(self, run_id: str) -> StoredToken | None:
        """The value `run_id` wrote, while it is AWSPENDING or AWSCURRENT; else None."""
        version = version_id_for(run_id)
        snap = self._snapshot() if self._cfg.create_if_missing else self._existing()
        if snap is None or not {PENDING, CURRENT} & set(snap.labels(version)):
            return None
        answer = self._try("GetSecretValue", _GONE, SecretId=self._secret_id, VersionId=version)
        if answer is None:  # a Lambda rotation's AWSPENDING version before any value is put
            return None
        facts = {**snap.trusted(version), "run_id": run_id}
        return decode_value(self._text(answer, version), version=version, **facts)

    def stage(self, record: TokenRecord, *, run_id: str) -> Receipt:
        """Put `record` as a new AWSPENDING version named after `run_id`.

        Replay-safe: an existing version of ours with the same token is reused (and given
        AWSPENDING back if it lost it). Raises BackendConflict when another version holds
        AWSPENDING without being AWSCURRENT (a rotation we did not start), or when our
        version holds a different token.
        """
        version = version_id_for(run_id)
        snap = self._snapshot() or self._create()
        self._fence_target(snap)
        labels, existing = snap.labels(version), None
        if version in snap.stages:  # a replay, or a Lambda rotation's empty AWSPENDING version
            existing = self._try(
                "GetSecretValue", _GONE, SecretId=self._secret_id, VersionId=version
            )
        if (
            existing is not None
            and decode_value(self._text(existing, version)).token != record.token
        ):
            raise self._error("different_token", BackendConflict, version=version, run_id=run_id)
        pending = snap.holder(PENDING)
        live = existing is not None and {PENDING, CURRENT} & set(labels)
        if not live and pending not in (None, version) and CURRENT not in snap.labels(pending):
            raise self._error("foreign_pending", BackendConflict, version=pending)
        if existing is None:
            answer = self._call(
                "PutSecretValue",
                SecretId=self._secret_id,
                ClientRequestToken=version,
                SecretString=_encode(record, self._cfg.format),
                VersionStages=[PENDING],
            )
            labels = tuple(answer.get("VersionStages", ()))
        if PENDING not in labels and CURRENT not in labels:
            # AWS ignores a same-value put to an existing version, so re-attach the label.
            self._move(PENDING, to=version, away_from=pending)
        self._tag(_group_tags("pending_", version, record.token_id, record.token_name, run_id))
        previous = snap.holder(PREVIOUS) if CURRENT in labels else snap.holder(CURRENT)
        return {"version_id": version, "previous_version_id": previous}

    def promote(self, receipt: Receipt, *, run_id: str) -> None:
        """Move AWSCURRENT to the run's version, drop its AWSPENDING, tag its token id.

        Replay-safe: a version already AWSCURRENT is not moved again. Raises BackendError
        when the run's version holds neither AWSPENDING nor AWSCURRENT (nothing staged).
        """
        version = self._version_of(receipt, run_id)
        snap = self._existing()
        self._fence_target(snap)
        labels = snap.labels(version)
        previous = snap.holder(PREVIOUS) if CURRENT in labels else snap.holder(CURRENT)
        if CURRENT not in labels:
            if PENDING not in labels:
                raise self._error("not_staged", version=version, run_id=run_id)
            if self._lease is not None:
                self._lease("aws.move_current")
            self._move(CURRENT, to=version, away_from=snap.holder(CURRENT))
            self._undo_if_fenced_out(version, snap.holder(CURRENT), snap.holder(PREVIOUS))
        if PENDING in labels:
            self._move(PENDING, to=None, away_from=version)
        self._tag_promoted(snap, version, previous, run_id)

    def rollback(self, receipt: Receipt | None, *, run_id: str) -> None:
        """Put AWSCURRENT back where it was before `run_id` staged, and drop our AWSPENDING.

        Replay-safe and a no-op when the run's version is absent or already unlabelled.
        `receipt` None: the previous version is the one labelled AWSPREVIOUS. The first
        value a secret ever had cannot be un-set (AWS keeps AWSCURRENT on it); that case
        is logged and left as it is.
        """
        version = version_id_for(run_id)
        snap = self._snapshot()
        labels = snap.labels(version) if snap is not None else ()
        if snap is None:
            return
        if not labels:
            # A no-op still raises the fence (a stale stage must not land afterwards);
            # best effort: a role that may not tag has nothing here to undo either.
            try:
                self._fence_target(snap)
            except BackendError as exc:
                log.warning("backend.fence_not_raised", backend=self.label, error=str(exc))
            return
        self._fence_target(snap)
        if CURRENT in labels:
            if receipt and "previous_version_id" in receipt:
                target = receipt["previous_version_id"]
            else:
                target = snap.holder(PREVIOUS)
            if target is not None and str(target) in snap.stages:
                self._move(CURRENT, to=str(target), away_from=version)
            else:
                log.warning(
                    "backend.rollback_kept_first_value", backend=self.label, version_id=version
                )
        if PENDING in labels:
            self._move(PENDING, to=None, away_from=version)

    def describe(self) -> dict[str, str]:
        """Secret-free facts: where the secret is, its format, KMS key and labelled versions."""
        facts = {
            "type": TYPE,
            "secret_id": self._secret_id,
            "region": self._region,
            "format": self._cfg.format,
            "kms_key_id": self._cfg.kms_key_id or "",
        }
        try:
            snap = self._snapshot()
        except BackendError as exc:
            return {**facts, "error": str(exc)}
        if snap is None:
            return {**facts, "exists": "false"}
        facts["kms_key_id"] = snap.kms_key_id or facts["kms_key_id"] or "aws/secretsmanager"
        for label in (CURRENT, PENDING, PREVIOUS):
            facts[label] = snap.holder(label) or ""
        facts["token_id"] = (facts[CURRENT] and snap.trusted(facts[CURRENT])["token_id"]) or ""
        return {**facts, "exists": "true"}

    # -- helpers ---------------------------------------------------------------------------

    def _version_of(self, receipt: Receipt, run_id: str) -> str:
        version = version_id_for(run_id)
        given = receipt.get("version_id") if receipt else None
        if given is not None and str(given) != version:
            raise self._error("receipt", given=given, run_id=run_id, version=version)
        return version

    def _snapshot(self) -> _Snapshot | None:
        """DescribeSecret; None when the secret does not exist."""
        answer = self._try("DescribeSecret", _GONE, SecretId=self._secret_id)
        if answer is None:
            return None
        if answer.get("DeletedDate"):
            raise self._error("deleted")
        stages = {str(k): tuple(v) for k, v in (answer.get("VersionIdsToStages") or {}).items()}
        tags = {str(t["Key"]): str(t.get("Value", "")) for t in answer.get("Tags") or ()}
        return _Snapshot(stages, tags, answer.get("KmsKeyId"))

    def _existing(self) -> _Snapshot:
        snap = self._snapshot()
        if snap is None:
            raise self._error("missing")
        return snap

    def _create(self) -> _Snapshot:
        """CreateSecret with no value (so no version yet), when allowed; race-safe."""
        if not self._cfg.create_if_missing:
            raise self._error("missing")
        extra = {"KmsKeyId": self._cfg.kms_key_id} if self._cfg.kms_key_id else {}
        tags = [{"Key": k, "Value": v} for k, v in sorted(self._cfg.tags.items())]
        description = f"MotherDuck token for {self._account or 'an account'}, rotated by rotator"
        self._try(
            "CreateSecret", ("ResourceExistsException",),
            Name=self._secret_id, Description=description, Tags=tags, **extra,
        )  # fmt: skip
        log.info("backend.secret_created", backend=self.label)
        return self._existing()

    def _move(self, label: str, *, to: str | None, away_from: str | None) -> None:
        args = {"MoveToVersionId": to} if to else {}
        if away_from:
            args["RemoveFromVersionId"] = away_from
        self._call("UpdateSecretVersionStage", SecretId=self._secret_id, VersionStage=label, **args)

    def _tag_promoted(self, snap: _Snapshot, version: str, prev: str | None, run_id: str) -> None:
        """Tag the promoted token (from the staged group), keeping the old one as previous_."""
        current = snap.group("")
        if current["version_id"] == version:
            return
        staged = snap.group("pending_")
        if staged["version_id"] != version:  # tags lost; a JSON value still names its token
            answer = self._try("GetSecretValue", _GONE, SecretId=self._secret_id, VersionId=version)
            stored = decode_value(self._text(answer, version)) if answer else None
            token_id, name = (stored.token_id, stored.token_name) if stored else (None, None)
            staged = dict(zip(_FIELDS, (version, token_id or "", name or "", run_id), strict=True))
        tags = _group_tags("", *(staged[f] for f in _FIELDS))
        if prev and current["version_id"] == prev:
            tags.update(_group_tags("previous_", *(current[f] for f in _FIELDS)))
        self._tag(tags)

    def _tag(self, tags: Mapping[str, str]) -> None:
        pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
        self._call("TagResource", SecretId=self._secret_id, Tags=pairs)

    def _text(self, answer: Mapping[str, Any], version: str) -> str:
        if "SecretString" not in answer:
            raise self._error("binary", version=version)
        return str(answer["SecretString"])

    # -- the AWS edge: one client, one error translation -----------------------------------

    def _client(self) -> Any:
        if self._client_obj is None:
            import boto3
            from botocore.config import Config as BotoConfig

            why = insecure_reason(self._cfg.endpoint_url) if self._cfg.endpoint_url else None
            if why:  # accepted by the config only with `insecure = true`; said on every run
                log.warning("aws.insecure_url", backend=self.label, why=why)
            session = boto3.Session(profile_name=self._cfg.profile, region_name=self._region)
            self._client_obj = session.client(
                "secretsmanager",
                endpoint_url=self._cfg.endpoint_url,
                config=BotoConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=15),
            )
        return self._client_obj

    def _try(self, op: str, allow: tuple[str, ...], **kwargs: Any) -> dict[str, Any] | None:
        """Call `op`; an AWS error whose code is in `allow` gives None, any other BackendError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            method = getattr(self._client(), re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower())
            answer: dict[str, Any] = method(**kwargs)
        except ClientError as exc:
            if aws_errors.code(exc) in allow:
                return None
            raise self._client_error(exc, op) from exc
        except BotoCoreError as exc:
            raise self._transport_error(exc, op) from exc
        return answer

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        answer = self._try(op, (), **kwargs)
        assert answer is not None  # nothing is allowed, so every failure raised
        return answer

    def _client_error(self, exc: ClientError, op: str) -> BackendError:
        key, cls, facts = aws_errors.for_client_error(exc, op)
        return self._error(key, cls, **facts)

    def _transport_error(self, exc: BotoCoreError, op: str) -> BackendError:
        endpoint = self._cfg.endpoint_url or f"https://secretsmanager.{self._region}.amazonaws.com"
        what = " ".join(str(exc).split())
        key = aws_errors.for_transport_error(exc)
        cls = BackendCredentials if key in ("no_credentials", "profile") else BackendError
        return self._error(
            key, cls, op=op, endpoint=endpoint, what=what, profile=self._cfg.profile
        )

    def _error(
        self, key: str, cls: builtins.type[BackendError] = BackendError, **facts: object
    ) -> BackendError:
        where = f"secret {self._secret_id} in {self._region}"
        text = aws_errors.MESSAGES[key].format(
            where=where, sid=self._secret_id, region=self._region, **facts
        )
        return cls(text, backend=self.label)
