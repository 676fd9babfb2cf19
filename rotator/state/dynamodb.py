"""The DynamoDB checkpoint store: runs, accounts and leases in one table, for many hosts.

One item per document, keyed by `pk`:

    lease#<account>     owner, pid, host, boot_id, pid_ns, fence, version, acquired_at,
                        expires_at, released
    account#<account>   doc (JSON), version
    run#<run_id>        doc (JSON), version, account, ttl (epoch seconds, finished runs only)
    key#fingerprint     the HMAC key for token fingerprints (hex)

Conditions carry the rules (named below) instead of locks:

    acquire    put lease  IF  no lease yet  OR  exactly the record we judged free:
                          fence, version and expires_at all as read
    save       one transaction:  update lease (renew, version + 1)
                                   IF  fence = ours AND not released
                                 put run/account        IF  absent OR version = ours - 1

    holder     read ........ renew (version v -> v+1) ....
    taker               read (v, expired) ............ put IF version = v  -> refused
    (or the other way round: the takeover lands first, the renewal's fence check fails)

A renewal and a takeover can therefore never both succeed: each changes what the other's
condition pins. Expiry is judged with a clock-skew margin (`[state] clock_skew`): a lease
is free only once `expires_at + clock_skew` has passed on the taker's clock.
A lost condition is a lost race: LeaseHeld on acquire, LeaseLost on save.
botocore is imported when the store is built, not when rotator is imported (and boto3
not at all: `rotator.util.startup.aws_client`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rotator.errors import LeaseLost, StateError
from rotator.state.lease import Lease, lease_held, lease_is_free, next_lease, pid_alive
from rotator.state.store import SCHEMA_VERSION, Doc, parse_fingerprint_key, utcnow

__all__ = ["DynamoDBStore", "create_table"]

FINISHED_RUN_TTL = timedelta(days=180)
BATCH_KEYS = 100
"""Keys one BatchGetItem may ask for (DynamoDB's limit)."""


def _client(region: str | None, endpoint_url: str | None) -> Any:
    from botocore.config import Config as BotoConfig

    from rotator.util.startup import aws_client

    return aws_client(
        "dynamodb",
        region=region,
        endpoint_url=endpoint_url,
        config=BotoConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=10),
    )


def create_table(
    table: str, *, region: str | None, endpoint_url: str | None = None, client: Any = None
) -> str:
    """Create the table (on-demand, TTL on `ttl`); a no-op if it exists. Returns a status line."""
    ddb = client or _client(region, endpoint_url)
    with _errors(table, "create"):
        try:
            ddb.create_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ddb.exceptions.ResourceInUseException:
            return f"table {table} already exists"
        ddb.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        ddb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )
    return f"created table {table} (on-demand, TTL on 'ttl')"


class DynamoDBStore:
    """Checkpoints and leases in DynamoDB with conditional writes; safe across hosts."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        clock: Callable[[], datetime] = utcnow,
        host: str | None = None,
        pid_alive: Callable[[int], bool] | None = None,
        clock_skew: timedelta = timedelta(seconds=5),
    ) -> None:
        self.table = table
        self._skew = clock_skew
        self._ddb = client or _client(region, endpoint_url)
        self._clock = clock
        self._host = host or socket.gethostname()
        self._pid_alive = pid_alive
        self._key: bytes | None = None
        self._batch_denied = False  # a role without dynamodb:BatchGetItem: not asked again

    def describe(self) -> str:
        return f"dynamodb:{self.table}"

    def fingerprint_key(self) -> bytes:
        if self._key is None:
            fresh = secrets.token_bytes(32).hex()
            with _errors(self.table, "create the fingerprint key in"):
                try:
                    self._ddb.put_item(
                        TableName=self.table,
                        Item={"pk": {"S": "key#fingerprint"}, "key": {"S": fresh}},
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                    self._key = bytes.fromhex(fresh)
                except self._ddb.exceptions.ConditionalCheckFailedException:
                    item = self._get("key#fingerprint")
                    assert item is not None
                    text = item.get("key", {}).get("S", "")
                    self._key = parse_fingerprint_key(text, f"{self.table} key#fingerprint")
        return self._key

    # -- leases ------------------------------------------------------------------------

    def acquire_lease(self, account: str, *, owner: str, ttl: timedelta) -> Lease:
        existing = self.read_lease(account)
        now = self._clock()
        alive = self._pid_alive or pid_alive
        if not lease_is_free(existing, now=now, host=self._host, pid_alive=alive, skew=self._skew):
            assert existing is not None
            raise lease_held(account, existing)
        lease = next_lease(
            existing, account=account, owner=owner, host=self._host, now=now, ttl=ttl
        )
        # Named conditions: the lease is new, or is still exactly the record we judged free
        # (a renewal since our read bumped its version; a release or takeover its fence).
        condition, values = "attribute_not_exists(pk)", {}
        if existing is not None:
            same_version = "version = :v" if existing.version else (
                "(attribute_not_exists(version) OR version = :v)"  # written before versions
            )
            condition = f"fence = :seen AND expires_at = :exp AND {same_version}"
            values = {
                ":seen": {"N": str(existing.fence)},
                ":exp": {"S": existing.expires_at.isoformat()},
                ":v": {"N": str(existing.version)},
            }
        with _errors(self.table, "take the lease in"):
            try:
                self._ddb.put_item(
                    TableName=self.table,
                    Item=_lease_item(lease),
                    ConditionExpression=condition,
                    **({"ExpressionAttributeValues": values} if values else {}),
                )
            except self._ddb.exceptions.ConditionalCheckFailedException:
                winner = self.read_lease(account)
                raise lease_held(account, winner or lease) from None
        return lease

    def release_lease(self, lease: Lease) -> None:
        with (
            _errors(self.table, "release the lease in"),
            contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException),
        ):
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"lease#{lease.account.lower()}"}},
                UpdateExpression="SET released = :t, version = if_not_exists(version, :z) + :one",
                ConditionExpression="fence = :f",
                ExpressionAttributeValues={
                    ":t": {"BOOL": True},
                    ":f": {"N": str(lease.fence)},
                    ":z": {"N": "0"},
                    ":one": {"N": "1"},
                },
            )

    def read_lease(self, account: str) -> Lease | None:
        item = self._get(f"lease#{account.lower()}")
        if item is None:
            return None
        return Lease.from_doc({k: _plain(v) for k, v in item.items() if k != "pk"})

    # -- documents ---------------------------------------------------------------------

    def load_account(self, account: str) -> Doc | None:
        return self._doc(f"account#{account.lower()}")

    def load_accounts(self, accounts: Sequence[str]) -> dict[str, Doc | None]:
        """Several accounts' documents, one round trip per BATCH_KEYS (consistent reads).

        For a scheduled pass reading every account before it knows which have work: one
        BatchGetItem instead of one GetItem per account. An account missing from the
        answer (DynamoDB left its key unprocessed, or its item is not a document this
        rotator reads) is for the caller to read alone with `load_account`, which then
        says what is wrong; StateError if the batch itself fails (a role not granted
        dynamodb:BatchGetItem is then not asked again by this store).
        """
        if self._batch_denied:
            raise StateError(f"dynamodb:BatchGetItem on {self.table} was denied to this role")
        by_pk: dict[str, list[str]] = {}
        for name in accounts:  # names differing in case share one item
            by_pk.setdefault(f"account#{name.lower()}", []).append(name)
        keys = list(by_pk)
        found: dict[str, Doc | None] = {}
        for start in range(0, len(keys), BATCH_KEYS):
            chunk = keys[start : start + BATCH_KEYS]
            request = {"Keys": [{"pk": {"S": pk}} for pk in chunk], "ConsistentRead": True}
            try:
                with _errors(self.table, "batch-read (dynamodb:BatchGetItem) from"):
                    response = self._ddb.batch_get_item(RequestItems={self.table: request})
            except StateError as exc:
                self._batch_denied = "AccessDeniedException" in str(exc)
                raise
            items = {i["pk"]["S"]: i for i in response.get("Responses", {}).get(self.table, [])}
            left = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
            unprocessed = {key["pk"]["S"] for key in left}
            for pk in chunk:
                if pk in unprocessed:
                    continue
                try:
                    doc = self._parsed(pk, items.get(pk))
                except (StateError, ValueError, KeyError, TypeError):
                    continue
                for name in by_pk[pk]:
                    found[name] = doc
        return found

    def load_run(self, run_id: str) -> Doc | None:
        return self._doc(f"run#{run_id}")

    def save(self, lease: Lease, *, run: Doc | None = None, account: Doc | None = None) -> Lease:
        now = self._clock()
        ttl = lease.expires_at - lease.acquired_at
        renewed = replace(lease, acquired_at=now, expires_at=now + ttl, version=lease.version + 1)
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": f"lease#{lease.account.lower()}"}},
                    "UpdateExpression": (
                        "SET acquired_at = :a, expires_at = :e, "
                        "version = if_not_exists(version, :zero) + :one"
                    ),
                    # Fencing: only the current, unreleased holder may write.
                    "ConditionExpression": "fence = :f AND released = :no",
                    "ExpressionAttributeValues": {
                        ":a": {"S": renewed.acquired_at.isoformat()},
                        ":e": {"S": renewed.expires_at.isoformat()},
                        ":f": {"N": str(lease.fence)},
                        ":no": {"BOOL": False},
                        ":zero": {"N": "0"},
                        ":one": {"N": "1"},
                    },
                }
            }
        ]
        if run is not None:
            extra = {"account": {"S": lease.account.lower()}}
            if run.get("state") in ("completed", "rolled_back"):
                extra["ttl"] = {"N": str(int((now + FINISHED_RUN_TTL).timestamp()))}
            items.append(self._put(f"run#{run['run_id']}", run, extra))
        if account is not None:
            items.append(self._put(f"account#{lease.account.lower()}", account, {}))
        with _errors(self.table, "write to"):
            try:
                self._ddb.transact_write_items(TransactItems=items)
            except self._ddb.exceptions.TransactionCanceledException as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    holder = self.read_lease(lease.account)
                    raise LeaseLost(
                        f"lease on {lease.account!r} was taken over (now held by "
                        f"{holder.describe() if holder else 'nobody'}); "
                        "this run stopped without writing"
                    ) from None
                raise StateError(
                    f"DynamoDB table {self.table} refused a checkpoint write ({reasons}); "
                    "another writer changed the record"
                ) from None
        return renewed

    # -- retention (rotator/ops/retention.py) -----------------------------------------------

    def list_runs(self) -> Iterator[Doc]:
        """Every run document (a paginated scan: `rotator state prune`, not the hot path)."""
        pages = self._ddb.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="begins_with(pk, :run)",
            ExpressionAttributeValues={":run": {"S": "run#"}},
            ProjectionExpression="pk, doc",
            ConsistentRead=True,
        )
        with _errors(self.table, "scan"):
            for page in pages:
                for item in page.get("Items", []):
                    yield json.loads(item["doc"]["S"])

    def delete_run(self, run_id: str) -> None:
        """Delete a finished run's item now instead of waiting for its TTL."""
        with _errors(self.table, "delete from"):
            self._ddb.delete_item(TableName=self.table, Key={"pk": {"S": f"run#{run_id}"}})

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """`delete_run` for each (each delete is durable on its own in DynamoDB)."""
        for run_id in run_ids:
            self.delete_run(run_id)

    # -- plumbing ----------------------------------------------------------------------

    def _put(self, pk: str, doc: Doc, extra: dict[str, Any]) -> dict[str, Any]:
        version = int(doc.get("version", 0))
        body = json.dumps({"schema": SCHEMA_VERSION, **doc}, sort_keys=True)
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    "pk": {"S": pk},
                    "doc": {"S": body},
                    "version": {"N": str(version)},
                    **extra,
                },
                "ConditionExpression": "attribute_not_exists(pk) OR version = :prev",
                "ExpressionAttributeValues": {":prev": {"N": str(version - 1)}},
            }
        }

    def _doc(self, pk: str) -> Doc | None:
        return self._parsed(pk, self._get(pk))

    def _parsed(self, pk: str, item: dict[str, Any] | None) -> Doc | None:
        if item is None:
            return None
        doc = json.loads(item["doc"]["S"])
        if doc.get("schema") != SCHEMA_VERSION:
            raise StateError(
                f"{self.table} item {pk} has schema {doc.get('schema')!r}; "
                f"this rotator reads {SCHEMA_VERSION}"
            )
        return doc  # type: ignore[no-any-return]

    def _get(self, pk: str) -> dict[str, Any] | None:
        with _errors(self.table, "read from"):
            response = self._ddb.get_item(
                TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True
            )
        item: dict[str, Any] | None = response.get("Item")
        return item


def _lease_item(lease: Lease) -> dict[str, Any]:
    where = {k: {"S": v} for k, v in (("boot_id", lease.boot_id), ("pid_ns", lease.pid_ns)) if v}
    return {
        **where,
        "version": {"N": str(lease.version)},
        "pk": {"S": f"lease#{lease.account.lower()}"},
        "account": {"S": lease.account},
        "owner": {"S": lease.owner},
        "pid": {"N": str(lease.pid)},
        "host": {"S": lease.host},
        "fence": {"N": str(lease.fence)},
        "acquired_at": {"S": lease.acquired_at.isoformat()},
        "expires_at": {"S": lease.expires_at.isoformat()},
        "released": {"BOOL": lease.released},
    }


def _plain(value: dict[str, Any]) -> Any:
    kind, raw = next(iter(value.items()))
    return int(raw) if kind == "N" else raw


@contextlib.contextmanager
def _errors(table: str, action: str) -> Iterator[None]:
    """Translate botocore failures once, naming the table and what to check."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            raise
        hint = {
            "ResourceNotFoundException": "create it with `rotator state init`",
            "AccessDeniedException": "grant this role access to the table",
        }.get(code, "check [state] table, region and credentials")
        raise StateError(f"cannot {action} DynamoDB table {table}: {code}; {hint}") from exc
    except BotoCoreError as exc:
        raise StateError(
            f"cannot {action} DynamoDB table {table}: {exc}; check [state] region/endpoint_url"
        ) from exc
