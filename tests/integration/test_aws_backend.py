"""The Secrets Manager backend against a real moto server, seen the way a consumer sees it.

Every assertion on what a consumer reads goes through boto3 with an explicit
VersionStage (moto's default read lags a label move; see docs/design.md).
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from backends.aws_secrets_manager import SecretsManagerBackend, SecretsManagerConfig
from backends.base import TokenRecord, encode_value
from rotator.errors import BackendConflict, BackendError
from rotator.secret import Secret
from tests.support.moto_fixtures import MotoHandle
from tests.support.procs import free_port


def record(n: int | str) -> TokenRecord:
    return TokenRecord(
        token=Secret(f"md-secret-{n}-{uuid.uuid4().hex}"),
        token_id=str(uuid.uuid4()),
        token_name=f"rotator-svc-{n}",
        created_ts="2025-01-01T00:00:00Z",
    )


def backend(aws: MotoHandle, secret_id: str, **over: Any) -> SecretsManagerBackend:
    fields: dict[str, Any] = {"region": aws.region, "endpoint_url": aws.endpoint_url, **over}
    return SecretsManagerBackend(SecretsManagerConfig(secret_id=secret_id, **fields), account="svc")


def seed(sm: Any, name: str, rec: TokenRecord, fmt: str = "json") -> str:
    """Create the secret with `rec` as its first AWSCURRENT value; return that version id."""
    answer = sm.create_secret(Name=name, SecretString=encode_value(rec, fmt))  # type: ignore[arg-type]
    return str(answer["VersionId"])


def labels(sm: Any, name: str) -> dict[str, list[str]]:
    """Labelled versions only (moto also lists unlabelled ones; AWS does not)."""
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    return {vid: sorted(s) for vid, s in stages.items() if s}


def current(sm: Any, name: str) -> str:
    return str(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"])


def tags(sm: Any, name: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=name).get("Tags", [])}


def run_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def sm(aws: MotoHandle) -> Any:
    return aws.client("secretsmanager")


class TestStagingLabels:
    def test_stage_then_promote_moves_labels_like_a_rotation(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        """Stage adds AWSPENDING beside the old AWSCURRENT; promote swaps, leaving AWSPREVIOUS."""
        old, new, run = record("old"), record("new"), run_id()
        old_vid = seed(sm, "md/a", old)
        b = backend(aws, "md/a")

        receipt = b.stage(new, run_id=run)
        assert receipt == {"version_id": run, "previous_version_id": old_vid}
        assert labels(sm, "md/a") == {old_vid: ["AWSCURRENT"], run: ["AWSPENDING"]}
        assert current(sm, "md/a") == encode_value(old, "json")
        staged = b.read_staged(run)
        assert staged is not None and staged.token == new.token and staged.version == run
        cur = b.read_current()
        assert cur is not None and cur.token == old.token and cur.version == old_vid

        b.promote(receipt, run_id=run)
        assert labels(sm, "md/a") == {old_vid: ["AWSPREVIOUS"], run: ["AWSCURRENT"]}
        assert json.loads(current(sm, "md/a"))["motherduck_token"] == new.token.reveal()
        cur = b.read_current()
        assert cur is not None and cur.token == new.token and cur.token_id == new.token_id
        assert cur.run_id == run
        assert tags(sm, "md/a")["rotator:token_id"] == new.token_id
        assert tags(sm, "md/a")["rotator:version_id"] == run

    def test_stage_replay_creates_no_new_version(self, aws: MotoHandle, sm: Any) -> None:
        """Staging the same run twice returns the same receipt and leaves one new version."""
        old_vid, new, run = seed(sm, "md/b", record("old")), record("new"), run_id()
        b = backend(aws, "md/b")
        first = b.stage(new, run_id=run)
        versions = sm.list_secret_version_ids(SecretId="md/b", IncludeDeprecated=True)["Versions"]
        second = b.stage(new, run_id=run)
        again = sm.list_secret_version_ids(SecretId="md/b", IncludeDeprecated=True)["Versions"]
        assert first == second == {"version_id": run, "previous_version_id": old_vid}
        assert len(again) == len(versions) == 2

    def test_stage_replay_with_another_token_conflicts(self, aws: MotoHandle, sm: Any) -> None:
        """A run id whose version already holds a different token is refused, value unchanged."""
        seed(sm, "md/c", record("old"))
        b, run, first = backend(aws, "md/c"), run_id(), record("first")
        b.stage(first, run_id=run)
        with pytest.raises(BackendConflict, match="different token"):
            b.stage(record("second"), run_id=run)
        staged = b.read_staged(run)
        assert staged is not None and staged.token == first.token

    def test_promote_replay_keeps_awsprevious_on_the_old_version(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        """Promoting twice does not move AWSCURRENT again (AWSPREVIOUS stays on the old value)."""
        old_vid, run = seed(sm, "md/d", record("old")), run_id()
        b = backend(aws, "md/d")
        receipt = b.stage(record("new"), run_id=run)
        b.promote(receipt, run_id=run)
        b.promote(receipt, run_id=run)
        b.promote({}, run_id=run)
        assert labels(sm, "md/d") == {old_vid: ["AWSPREVIOUS"], run: ["AWSCURRENT"]}

    def test_stage_replay_after_promote_returns_the_same_receipt(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        """A stage replayed after its promote answers the original receipt and changes nothing."""
        old_vid, new, run = seed(sm, "md/e", record("old")), record("new"), run_id()
        b = backend(aws, "md/e")
        receipt = b.stage(new, run_id=run)
        b.promote(receipt, run_id=run)
        assert b.stage(new, run_id=run) == receipt
        assert labels(sm, "md/e") == {old_vid: ["AWSPREVIOUS"], run: ["AWSCURRENT"]}

    def test_promote_without_a_stage_fails_loudly(self, aws: MotoHandle, sm: Any) -> None:
        """Promote for a run that staged nothing names the run and leaves AWSCURRENT alone."""
        old_vid = seed(sm, "md/f", record("old"))
        with pytest.raises(BackendError, match="nothing staged"):
            backend(aws, "md/f").promote({}, run_id=run_id())
        assert labels(sm, "md/f") == {old_vid: ["AWSCURRENT"]}


class TestResumeAfterCrash:
    def test_promote_finishes_after_a_crash_between_label_moves(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        """AWSCURRENT moved but AWSPENDING and tags not yet done: a replayed promote finishes."""
        old_vid, new, run = seed(sm, "md/g", record("old")), record("new"), run_id()
        b = backend(aws, "md/g")
        b.stage(new, run_id=run)
        sm.update_secret_version_stage(
            SecretId="md/g",
            VersionStage="AWSCURRENT",
            MoveToVersionId=run,
            RemoveFromVersionId=old_vid,
        )
        b.promote({"version_id": run, "previous_version_id": old_vid}, run_id=run)
        assert labels(sm, "md/g") == {old_vid: ["AWSPREVIOUS"], run: ["AWSCURRENT"]}
        cur = b.read_current()
        assert cur is not None and cur.token_id == new.token_id

    def test_stage_finishes_after_a_crash_before_tagging(self, aws: MotoHandle, sm: Any) -> None:
        """A version put with AWSPENDING but never tagged is adopted by the replayed stage."""
        old_vid, new, run = seed(sm, "md/h", record("old")), record("new"), run_id()
        sm.put_secret_value(
            SecretId="md/h",
            ClientRequestToken=run,
            SecretString=encode_value(new, "json"),
            VersionStages=["AWSPENDING"],
        )
        b = backend(aws, "md/h")
        assert b.stage(new, run_id=run) == {"version_id": run, "previous_version_id": old_vid}
        assert tags(sm, "md/h")["rotator:pending_token_id"] == new.token_id

    def test_stage_after_rollback_gives_awspending_back(self, aws: MotoHandle, sm: Any) -> None:
        """Re-staging a rolled-back run re-labels its version instead of minting another."""
        old_vid, new, run = seed(sm, "md/i", record("old")), record("new"), run_id()
        b = backend(aws, "md/i")
        b.stage(new, run_id=run)
        b.rollback(None, run_id=run)
        assert b.read_staged(run) is None
        b.stage(new, run_id=run)
        assert labels(sm, "md/i") == {old_vid: ["AWSCURRENT"], run: ["AWSPENDING"]}


class TestRollback:
    def test_rollback_before_promote_drops_awspending(self, aws: MotoHandle, sm: Any) -> None:
        """Rolling back a staged run leaves AWSCURRENT on the old value and no AWSPENDING."""
        old, run = record("old"), run_id()
        old_vid = seed(sm, "md/r1", old)
        b = backend(aws, "md/r1")
        receipt = b.stage(record("new"), run_id=run)
        b.rollback(receipt, run_id=run)
        b.rollback(receipt, run_id=run)
        assert labels(sm, "md/r1") == {old_vid: ["AWSCURRENT"]}
        assert current(sm, "md/r1") == encode_value(old, "json")
        assert b.read_staged(run) is None

    def test_rollback_after_promote_moves_awscurrent_back(self, aws: MotoHandle, sm: Any) -> None:
        """Rolling back a promoted run makes the old value AWSCURRENT again; replay is a no-op."""
        old, run = record("old"), run_id()
        old_vid = seed(sm, "md/r2", old)
        b = backend(aws, "md/r2")
        receipt = b.stage(record("new"), run_id=run)
        b.promote(receipt, run_id=run)
        b.rollback(receipt, run_id=run)
        b.rollback(receipt, run_id=run)
        assert labels(sm, "md/r2")[old_vid] == ["AWSCURRENT"]
        assert "AWSPENDING" not in str(labels(sm, "md/r2"))
        assert current(sm, "md/r2") == encode_value(old, "json")
        cur = b.read_current()
        assert cur is not None and cur.token == old.token and cur.token_id == old.token_id
        assert b.read_staged(run) is None

    @pytest.mark.parametrize("promoted", [False, True])
    def test_rollback_without_receipt_finds_the_run(
        self, aws: MotoHandle, sm: Any, promoted: bool
    ) -> None:
        """rollback(None, run_id) after a crash before the receipt was kept restores the old value."""
        old, run = record("old"), run_id()
        old_vid = seed(sm, "md/r3", old)
        b = backend(aws, "md/r3")
        receipt = b.stage(record("new"), run_id=run)
        if promoted:
            b.promote(receipt, run_id=run)
        b.rollback(None, run_id=run)
        assert labels(sm, "md/r3")[old_vid] == ["AWSCURRENT"]
        assert "AWSPENDING" not in str(labels(sm, "md/r3"))
        assert current(sm, "md/r3") == encode_value(old, "json")

    def test_rollback_of_an_unknown_run_is_a_no_op(self, aws: MotoHandle, sm: Any) -> None:
        """Rolling back a run that never staged here changes nothing (even with no secret)."""
        old_vid = seed(sm, "md/r4", record("old"))
        backend(aws, "md/r4").rollback(None, run_id=run_id())
        backend(aws, "md/absent").rollback(None, run_id=run_id())
        assert labels(sm, "md/r4") == {old_vid: ["AWSCURRENT"]}


class TestForeignPending:
    def test_foreign_awspending_is_refused(self, aws: MotoHandle, sm: Any) -> None:
        """An AWSPENDING this run did not create raises BackendConflict naming that version."""
        old_vid = seed(sm, "md/p", record("old"))
        foreign = str(uuid.uuid4())
        sm.put_secret_value(
            SecretId="md/p",
            ClientRequestToken=foreign,
            SecretString="someone else",
            VersionStages=["AWSPENDING"],
        )
        with pytest.raises(BackendConflict) as caught:
            backend(aws, "md/p").stage(record("new"), run_id=run_id())
        assert foreign in str(caught.value) and "update-secret-version-stage" in str(caught.value)
        assert labels(sm, "md/p") == {old_vid: ["AWSCURRENT"], foreign: ["AWSPENDING"]}

    def test_stage_replay_after_promote_ignores_a_later_foreign_awspending(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        """Our promoted version is a finished stage: a replay answers without a conflict."""
        seed(sm, "md/p2", record("old"))
        b, new, run = backend(aws, "md/p2"), record("new"), run_id()
        receipt = b.stage(new, run_id=run)
        b.promote(receipt, run_id=run)
        sm.put_secret_value(
            SecretId="md/p2",
            ClientRequestToken=str(uuid.uuid4()),
            SecretString="someone else",
            VersionStages=["AWSPENDING"],
        )
        assert b.stage(new, run_id=run) == receipt

    def test_a_foreign_awspending_that_took_ours_is_a_conflict(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        """If another writer moved AWSPENDING off our staged version, a replay refuses."""
        seed(sm, "md/p3", record("old"))
        b, new, run = backend(aws, "md/p3"), record("new"), run_id()
        b.stage(new, run_id=run)
        foreign = str(uuid.uuid4())
        sm.put_secret_value(
            SecretId="md/p3",
            ClientRequestToken=foreign,
            SecretString="someone else",
            VersionStages=["AWSPENDING"],
        )
        with pytest.raises(BackendConflict, match=foreign):
            b.stage(new, run_id=run)
        assert b.read_staged(run) is None

    def test_leftover_awspending_on_the_current_version_is_not_a_conflict(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        """AWSPENDING left on the AWSCURRENT version (a finished rotation) is simply moved."""
        old_vid, run = seed(sm, "md/q", record("old")), run_id()
        sm.update_secret_version_stage(
            SecretId="md/q", VersionStage="AWSPENDING", MoveToVersionId=old_vid
        )
        backend(aws, "md/q").stage(record("new"), run_id=run)
        assert labels(sm, "md/q") == {old_vid: ["AWSCURRENT"], run: ["AWSPENDING"]}


class TestCreateAndFormats:
    def test_create_if_missing_uses_kms_key_and_tags(self, aws: MotoHandle, sm: Any) -> None:
        """A missing secret is created with the KMS key and tags; the first value becomes current."""
        key_id = aws.client("kms").create_key(Description="rotator test")["KeyMetadata"]["KeyId"]
        b = backend(aws, "md/new", create_if_missing=True, kms_key_id=key_id, tags={"team": "data"})
        assert b.read_current() is None
        new, run = record("new"), run_id()
        receipt = b.stage(new, run_id=run)
        assert receipt == {"version_id": run, "previous_version_id": None}
        described = sm.describe_secret(SecretId="md/new")
        assert described["KmsKeyId"] == key_id
        assert tags(sm, "md/new")["team"] == "data"
        b.promote(receipt, run_id=run)
        assert labels(sm, "md/new") == {run: ["AWSCURRENT"]}
        cur = b.read_current()
        assert cur is not None and cur.token == new.token and cur.token_id == new.token_id
        assert b.describe()["kms_key_id"] == key_id

    def test_raw_format_keeps_the_token_id_in_tags(self, aws: MotoHandle, sm: Any) -> None:
        """Raw values are bare tokens; read_current finds the token id in the version's tags."""
        first = record("first")
        seed(sm, "md/raw", first, fmt="raw")
        b = backend(aws, "md/raw", format="raw")
        cur = b.read_current()
        assert cur is not None and cur.token == first.token and cur.token_id is None
        second, third = record("second"), record("third")
        run2, run3 = run_id(), run_id()
        b.promote(b.stage(second, run_id=run2), run_id=run2)
        assert current(sm, "md/raw") == second.token.reveal()
        cur = b.read_current()
        assert cur is not None and cur.token_id == second.token_id and cur.run_id == run2
        receipt3 = b.stage(third, run_id=run3)
        staged = b.read_staged(run3)
        assert staged is not None and staged.token_id == third.token_id
        b.promote(receipt3, run_id=run3)
        cur = b.read_current()
        assert cur is not None and cur.token_id == third.token_id
        b.rollback(receipt3, run_id=run3)
        cur = b.read_current()
        assert cur is not None and cur.token == second.token and cur.token_id == second.token_id

    def test_json_format_stores_the_documented_fields(self, aws: MotoHandle, sm: Any) -> None:
        """The JSON value carries motherduck_token, token_id, token_name, created_ts, expire_at."""
        seed(sm, "md/json", record("old"))
        b, new, run = backend(aws, "md/json"), record("new"), run_id()
        b.promote(b.stage(new, run_id=run), run_id=run)
        value = json.loads(current(sm, "md/json"))
        assert value == {
            "motherduck_token": new.token.reveal(),
            "token_id": new.token_id,
            "token_name": new.token_name,
            "created_ts": new.created_ts,
            "expire_at": None,
        }

    def test_arn_alone_gives_the_region(self, aws: MotoHandle, sm: Any) -> None:
        """A full ARN as secret_id needs no region field and reads the same secret."""
        old = record("old")
        seed(sm, "md/arn", old)
        arn = sm.describe_secret(SecretId="md/arn")["ARN"]
        cfg = SecretsManagerConfig(secret_id=arn, endpoint_url=aws.endpoint_url)
        b = SecretsManagerBackend(cfg)
        cur = b.read_current()
        assert cur is not None and cur.token == old.token
        assert b.label == f"aws-secrets-manager:{aws.region}:{arn}"

    def test_describe_lists_versions_by_label_and_no_secret(self, aws: MotoHandle, sm: Any) -> None:
        """describe() names the secret, region, format and the version per label, no value."""
        old = record("old")
        old_vid, run = seed(sm, "md/desc", old), run_id()
        b = backend(aws, "md/desc")
        b.stage(record("new"), run_id=run)
        facts = b.describe()
        assert facts["secret_id"] == "md/desc" and facts["region"] == aws.region
        assert facts["AWSCURRENT"] == old_vid and facts["AWSPENDING"] == run
        assert facts["format"] == "json" and facts["exists"] == "true"
        assert old.token.reveal() not in json.dumps(facts)


class TestErrors:
    def test_missing_secret_is_one_line_naming_secret_and_region(self, aws: MotoHandle) -> None:
        """A missing secret names itself and the region and suggests create_if_missing."""
        b = backend(aws, "md/nope")
        for call in (b.read_current, lambda: b.stage(record("x"), run_id=run_id())):
            with pytest.raises(BackendError) as caught:
                call()
            message = str(caught.value)
            assert "\n" not in message and "md/nope" in message and aws.region in message
            assert "create_if_missing" in message

    def test_secret_scheduled_for_deletion(self, aws: MotoHandle, sm: Any) -> None:
        """A secret pending deletion is reported with the restore-secret command to run."""
        seed(sm, "md/gone", record("old"))
        sm.delete_secret(SecretId="md/gone", RecoveryWindowInDays=7)
        with pytest.raises(BackendError, match="restore-secret --secret-id md/gone") as caught:
            backend(aws, "md/gone").read_current()
        assert "scheduled for deletion" in str(caught.value)

    def test_arn_region_mismatch_is_a_config_error(self, aws: MotoHandle) -> None:
        """An ARN from one region with `region` set to another is rejected at config time."""
        arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:md/x-AbCdEf"
        with pytest.raises(ValidationError, match="does not match the region 'eu-west-1'"):
            SecretsManagerConfig(secret_id=arn, region=aws.region)

    def test_unreachable_endpoint_is_one_line(self, aws: MotoHandle) -> None:
        """A closed endpoint port gives one line naming the endpoint, secret and what to check."""
        url = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(BackendError) as caught:
            backend(aws, "md/x", endpoint_url=url).read_current()
        message = str(caught.value)
        assert "\n" not in message and url in message and "md/x" in message
        assert "endpoint_url" in message


def test_consumer_only_ever_sees_a_complete_old_or_new_value(aws: MotoHandle, sm: Any) -> None:
    """A reader polling AWSCURRENT during stage/promote/rollback cycles sees only promoted values."""
    first = record("first")
    seed(sm, "md/live", first)
    b = backend(aws, "md/live")
    promoted = {encode_value(first, "json")}
    never_current: set[str] = set()
    seen: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    reader_sm = aws.client("secretsmanager")

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(current(reader_sm, "md/live"))
            except BaseException as exc:  # any failed read is a consumer outage
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(12):
            rec, run = record(i), run_id()
            value = encode_value(rec, "json")
            receipt = b.stage(rec, run_id=run)
            if i % 3 == 0:
                never_current.add(value)
                b.rollback(receipt, run_id=run)
                continue
            promoted.add(value)
            b.promote(receipt, run_id=run)
            if i % 3 == 1:
                b.rollback(receipt, run_id=run)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not errors
    assert len(seen) > 20
    assert set(seen) <= promoted
    assert not set(seen) & never_current
    assert all(json.loads(v)["motherduck_token"].startswith("md-secret-") for v in seen)


class TestPlainHttpEndpoint:
    """The request bodies carry the token: plain http to another host only with `insecure`."""

    def test_refused_without_insecure_and_warned_with_it(
        self, aws: MotoHandle, sm: Any
    ) -> None:
        # 0.0.0.0 is not a loopback address by name, so the rule applies; a connection to
        # it still reaches the moto server on this host (nothing leaves the machine).
        plain = aws.endpoint_url.replace("127.0.0.1", "0.0.0.0")  # noqa: S104 - not a bind
        assert plain != aws.endpoint_url
        with pytest.raises(ValidationError, match="would send the secret values in clear"):
            backend(aws, "md/plain", endpoint_url=plain)
        name = f"md/plain-{uuid.uuid4().hex[:8]}"
        seed(sm, name, record(0))
        rec = record(1)
        with structlog.testing.capture_logs() as logs:
            staged = backend(aws, name, endpoint_url=plain, insecure=True)
            staged.stage(rec, run_id=run_id())
        assert [e["why"] for e in logs if e["event"] == "aws.insecure_url"] == [
            "plain http to a non-loopback host"
        ]
        versions = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        assert any("AWSPENDING" in s for s in versions.values())  # it did reach moto
