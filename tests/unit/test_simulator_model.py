"""The simulator model follows the REST spec: validation, auth, expiry, revoke, persistence."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.simulator.apierror import ApiError
from rotator.simulator.faults import Faults, parse_rule, retry_after_header
from rotator.simulator.model import ADMIN_ROLE_ISSUE, Model
from rotator.simulator.persistence import StateFile
from rotator.simulator.records import OffsetClock
from rotator.simulator.server import resolve

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ADMIN = "admin-secret"
TTL_ISSUE = "ttl: must be an integer between 300 and 31536000 seconds"


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model(clock: FakeClock) -> Model:
    m = Model(clock)
    m.ensure_user("admin", admin=True)
    m.issue_token("admin", "admin", secret=ADMIN)
    m.ensure_user("svc_one")
    return m


def fails(status: int, call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args)
    assert info.value.status == status, info.value.body()
    return info.value


def issues_of(error: ApiError) -> list[str]:
    return [item["message"] for item in error.body().get("issues", [])]


class TestTokenValidation:
    @pytest.mark.parametrize(
        ("body", "issue"),
        [
            ({}, "name: is required"),
            ({"name": ""}, "name: must be 1-255 characters"),
            ({"name": "x" * 256}, "name: must be 1-255 characters"),
            ({"name": 5}, "name: must be 1-255 characters"),
            ({"name": "t", "ttl": 299}, TTL_ISSUE),
            ({"name": "t", "ttl": 31536001}, TTL_ISSUE),
            ({"name": "t", "ttl": "600"}, TTL_ISSUE),
            ({"name": "t", "ttl": True}, TTL_ISSUE),
            ({"name": "t", "token_type": "rw"}, "token_type: must be read_write or read_scaling"),
        ],
    )
    def test_invalid_field_is_named(self, model: Model, body: dict[str, Any], issue: str) -> None:
        """Each invalid create-token field yields a 400 whose single issue names that field."""
        error = fails(400, model.create_token, ADMIN, "svc_one", body)
        assert error.code == "BAD_REQUEST"
        assert issues_of(error) == [issue]

    def test_every_bad_field_reported(self, model: Model) -> None:
        """A body with three bad fields gets three issues, one per field."""
        body = {"name": "", "ttl": 1, "token_type": 1}
        error = fails(400, model.create_token, ADMIN, "svc_one", body)
        assert [text.split(":")[0] for text in issues_of(error)] == ["name", "ttl", "token_type"]

    def test_non_object_body(self, model: Model) -> None:
        """A JSON body that is not an object is a 400 about the body."""
        assert issues_of(fails(400, model.create_token, ADMIN, "svc_one", [1])) == [
            "body: must be a JSON object"
        ]

    def test_ttl_bounds_accepted(self, model: Model) -> None:
        """ttl 300 and 31536000 are both accepted and set expire_at ttl seconds later."""
        for ttl in (300, 31_536_000):
            created = model.create_token(ADMIN, "svc_one", {"name": "t", "ttl": ttl})
            expire = datetime.fromisoformat(created["expire_at"])
            assert expire - datetime.fromisoformat(created["created_ts"]) == timedelta(seconds=ttl)


class TestTokenShape:
    def test_created_token_fields(self, model: Model) -> None:
        """The create answer carries the secret, a UUID id, RFC 3339 created_ts and no expire_at."""
        created = model.create_token(ADMIN, "svc_one", {"name": "ci"})
        assert set(created) == {"token", "id", "name", "created_ts", "read_only", "token_type"}
        assert created["created_ts"] == "2026-01-01T12:00:00.000Z"
        assert created["token_type"] == "read_write" and created["read_only"] is False
        assert len(created["id"]) == 36 and created["id"].count("-") == 4

    def test_secret_is_jwt_shaped_and_unique(self, model: Model) -> None:
        """Secrets are three base64url parts with an HS256 JWT header, and never repeat."""
        secrets = {
            model.create_token(ADMIN, "svc_one", {"name": "same"})["token"] for _ in range(20)
        }
        assert len(secrets) == 20
        header, payload, _sig = next(iter(secrets)).split(".")
        pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
        assert json.loads(base64.urlsafe_b64decode(pad(header))) == {"alg": "HS256", "typ": "JWT"}
        claims = json.loads(base64.urlsafe_b64decode(pad(payload)))
        assert claims["username"] == "svc_one" and "token_id" in claims and "iat" in claims

    def test_read_scaling_is_read_only(self, model: Model) -> None:
        """A read_scaling token reports read_only true."""
        created = model.create_token(ADMIN, "svc_one", {"name": "rs", "token_type": "read_scaling"})
        assert created["read_only"] is True

    def test_list_never_shows_secret(self, model: Model) -> None:
        """Listed tokens carry metadata only; duplicate names are allowed."""
        model.create_token(ADMIN, "svc_one", {"name": "dup"})
        model.create_token(ADMIN, "svc_one", {"name": "dup"})
        tokens = model.list_tokens(ADMIN, "svc_one")["tokens"]
        assert [t["name"] for t in tokens] == ["dup", "dup"]
        assert all("token" not in t and "secret" not in t for t in tokens)


class TestAuthMatrix:
    def test_missing_or_unknown_token_is_401(self, model: Model) -> None:
        """No token or an unknown one gets 401 Invalid Credentials."""
        for bearer in (None, "", "nope"):
            error = fails(401, model.list_tokens, bearer, "svc_one")
            assert (error.code, error.message) == ("UNAUTHORIZED", "Invalid Credentials")

    def test_non_admin_gets_403_with_role_issue(self, model: Model) -> None:
        """A service account's token is 403 on admin operations, naming org_admin."""
        own = model.create_token(ADMIN, "svc_one", {"name": "t"})["token"]
        calls = [
            (model.list_tokens, own, "svc_one"),
            (model.create_user, own, {"username": "svc_new"}),
            (model.get_instances, own, "svc_one"),
            (model.active_accounts, own),
            (model.delete_user, own, "svc_one"),
        ]
        for call, *args in calls:
            error = fails(403, call, *args)
            assert error.code == "FORBIDDEN" and issues_of(error) == [ADMIN_ROLE_ISSUE]

    def test_self_token_creation_allowed(self, model: Model) -> None:
        """Any user may create a token for their own username, in any letter case."""
        own = model.create_token(ADMIN, "svc_one", {"name": "t"})["token"]
        created = model.create_token(own, "SVC_ONE", {"name": "self"})
        assert model.whoami(created["token"]) == {"current_user": "svc_one"}

    def test_non_admin_cannot_mint_for_others(self, model: Model) -> None:
        """A non-admin creating a token for another (or unknown) user gets 403."""
        model.ensure_user("svc_two")
        own = model.create_token(ADMIN, "svc_one", {"name": "t"})["token"]
        fails(403, model.create_token, own, "svc_two", {"name": "x"})
        fails(403, model.create_token, own, "svc_ghost", {"name": "x"})

    def test_admin_cannot_mint_for_another_human(self, model: Model) -> None:
        """An admin may not create tokens for another human user (403)."""
        model.ensure_user("other_admin", admin=True)
        fails(403, model.create_token, ADMIN, "other_admin", {"name": "x"})

    def test_read_scaling_token_is_403_on_rest(self, model: Model) -> None:
        """read_scaling tokens get 403 on REST even for themselves, but whoami accepts them."""
        rs = model.create_token(ADMIN, "svc_one", {"name": "rs", "token_type": "read_scaling"})
        fails(403, model.create_token, rs["token"], "svc_one", {"name": "x"})
        assert model.whoami(rs["token"]) == {"current_user": "svc_one"}

    def test_unknown_user_is_json_404(self, model: Model) -> None:
        """Admin operations on a missing user answer NOT_FOUND."""
        for call, *args in [
            (model.create_token, ADMIN, "svc_ghost", {"name": "x"}),
            (model.list_tokens, ADMIN, "svc_ghost"),
            (model.revoke_token, ADMIN, "svc_ghost", "x"),
            (model.delete_user, ADMIN, "svc_ghost"),
            (model.get_instances, ADMIN, "svc_ghost"),
            (model.put_instances, ADMIN, "svc_ghost", {}),
        ]:
            assert fails(404, call, *args).code == "NOT_FOUND"


class TestExpiryAndRevoke:
    def test_expired_token_fails_and_vanishes(self, model: Model, clock: FakeClock) -> None:
        """After its ttl a token gets 401 and leaves the list, but stays in state as not live."""
        created = model.create_token(ADMIN, "svc_one", {"name": "short", "ttl": 300})
        clock.advance(299)
        assert model.whoami(created["token"]) == {"current_user": "svc_one"}
        clock.advance(1)
        fails(401, model.whoami, created["token"])
        assert model.list_tokens(ADMIN, "svc_one")["tokens"] == []
        [entry] = [t for t in model.state()["tokens"] if t["id"] == created["id"]]
        assert entry["live"] is False and entry["revoked_at"] is None

    def test_revoke_by_id(self, model: Model, clock: FakeClock) -> None:
        """Revoking answers {}, kills the token, drops it from the list, and a repeat is 404."""
        created = model.create_token(ADMIN, "svc_one", {"name": "t"})
        keep = model.create_token(ADMIN, "svc_one", {"name": "keep"})
        assert model.revoke_token(ADMIN, "svc_one", created["id"]) == {}
        fails(401, model.whoami, created["token"])
        assert [t["id"] for t in model.list_tokens(ADMIN, "svc_one")["tokens"]] == [keep["id"]]
        fails(404, model.revoke_token, ADMIN, "svc_one", created["id"])

    def test_revoke_wrong_user_is_404(self, model: Model) -> None:
        """A token id revoked under another username is not found and stays live."""
        model.ensure_user("svc_two")
        created = model.create_token(ADMIN, "svc_one", {"name": "t"})
        fails(404, model.revoke_token, ADMIN, "svc_two", created["id"])
        assert model.whoami(created["token"]) == {"current_user": "svc_one"}

    def test_delete_user_revokes_tokens(self, model: Model) -> None:
        """Deleting a user answers its name and kills all its tokens."""
        created = model.create_token(ADMIN, "svc_one", {"name": "t"})
        assert model.delete_user(ADMIN, "SVC_ONE") == {"username": "svc_one"}
        fails(401, model.whoami, created["token"])
        fails(404, model.list_tokens, ADMIN, "svc_one")


class TestUsers:
    @pytest.mark.parametrize(
        ("username", "issue"),
        [
            (None, "username: is required"),
            ("ab", "username: must be 3-255 characters"),
            ("a" * 256, "username: must be 3-255 characters"),
            ("1abc", "username: must start with a letter"),
            ("_abc", "username: must start with a letter"),
            ("ab-c", "username: may contain only letters, digits and underscore"),
            ("abc é", "username: may contain only letters, digits and underscore"),
        ],
    )
    def test_username_rules(self, model: Model, username: object, issue: str) -> None:
        """Bad service-account names are a 400 naming the username field."""
        assert issues_of(fails(400, model.create_user, ADMIN, {"username": username})) == [issue]

    def test_duplicate_is_case_insensitive(self, model: Model) -> None:
        """A name differing only in case from an existing user is a 400 duplicate."""
        assert issues_of(fails(400, model.create_user, ADMIN, {"username": "SVC_one"})) == [
            "username: already exists"
        ]

    def test_new_account_has_default_config(self, model: Model) -> None:
        """A created service account answers its name and has the default pulse config."""
        assert model.create_user(ADMIN, {"username": "Svc_New9"}) == {"username": "Svc_New9"}
        assert model.get_instances(ADMIN, "svc_new9") == {
            "read_write": {"instance_size": "pulse"},
            "read_scaling": {"instance_size": "pulse", "flock_size": 0},
        }


class TestInstances:
    GOOD = {
        "read_write": {"instance_size": "standard", "cooldown_seconds": 60},
        "read_scaling": {"instance_size": "pulse", "flock_size": 64},
    }

    def test_put_answers_unwrapped_and_activates(self, model: Model) -> None:
        """PUT answers the config unwrapped and the account shows up as active."""
        assert model.put_instances(ADMIN, "svc_one", {"config": self.GOOD}) == self.GOOD
        assert model.get_instances(ADMIN, "svc_one") == self.GOOD
        [account] = model.active_accounts(ADMIN)["accounts"]
        assert account["username"] == "svc_one"
        assert account["ducklings"][0]["status"] == "running"

    @pytest.mark.parametrize(
        ("config", "issue"),
        [
            (None, "config: is required"),
            ({"read_write": {"instance_size": "pulse"}}, "config.read_scaling: is required"),
            (
                {"read_write": {"instance_size": "huge"}, "read_scaling": GOOD["read_scaling"]},
                "config.read_write.instance_size: "
                "must be one of pulse, standard, jumbo, mega, giga",
            ),
            (
                {"read_write": {"instance_size": "pulse", "cooldown_seconds": 60},
                 "read_scaling": GOOD["read_scaling"]},
                "config.read_write.cooldown_seconds: not allowed with instance_size pulse",
            ),
            (
                {"read_write": {"instance_size": "mega", "cooldown_seconds": 59},
                 "read_scaling": GOOD["read_scaling"]},
                "config.read_write.cooldown_seconds: must be an integer between 60 and 86400",
            ),
            (
                {"read_write": GOOD["read_write"],
                 "read_scaling": {"instance_size": "giga", "flock_size": 65}},
                "config.read_scaling.flock_size: must be an integer between 0 and 64",
            ),
        ],
    )
    def test_invalid_config(self, model: Model, config: object, issue: str) -> None:
        """Each spec rule on Duckling configs is a 400 naming the field."""
        body = {} if config is None else {"config": config}
        assert issues_of(fails(400, model.put_instances, ADMIN, "svc_one", body)) == [issue]


class TestPersistence:
    def test_round_trip(self, model: Model, clock: FakeClock, tmp_path: Path) -> None:
        """A saved model loads back with the same users, tokens, liveness and configs."""
        created = model.create_token(ADMIN, "svc_one", {"name": "t", "ttl": 600})
        gone = model.create_token(ADMIN, "svc_one", {"name": "gone"})
        model.revoke_token(ADMIN, "svc_one", gone["id"])
        model.put_instances(ADMIN, "svc_one", {"config": TestInstances.GOOD})
        store = StateFile(tmp_path / "state.json")
        store.save(model)
        assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
        loaded = StateFile(tmp_path / "state.json").load(clock)
        assert loaded is not None
        assert loaded.state() == model.state()
        assert loaded.whoami(created["token"]) == {"current_user": "svc_one"}
        fails(401, loaded.whoami, gone["token"])
        assert loaded.active_accounts(ADMIN) == model.active_accounts(ADMIN)

    def test_missing_file_loads_none(self, tmp_path: Path) -> None:
        """A state file that does not exist yet means a fresh start."""
        assert StateFile(tmp_path / "absent.json").load() is None

    def test_garbage_file_is_refused(self, tmp_path: Path) -> None:
        """A file that is not our state raises ValueError naming the file."""
        path = tmp_path / "state.json"
        path.write_text('{"hello": 1}')
        with pytest.raises(ValueError, match=r"state\.json"):
            StateFile(path).load()


class TestFaultsAndRouting:
    def test_rule_validation_names_fields(self) -> None:
        """A bad fault rule is refused with every problem named."""
        with pytest.raises(ValueError) as info:
            parse_rule({"route": "nope", "action": "explode", "times": 0, "probability": 2})
        text = str(info.value)
        for field in ("route:", "action:", "times:", "probability:"):
            assert field in text

    def test_times_and_delay_accumulate(self) -> None:
        """Delay rules add up, the first other rule decides, and times runs out."""
        faults = Faults(random.Random(1))
        faults.set_latency(0.5)
        faults.add(parse_rule({"route": "*", "action": "delay", "seconds": 1}))
        faults.add(
            parse_rule({"route": "create_token", "action": "error", "status": 503, "times": 1})
        )
        first = faults.decide("create_token", "svc")
        assert first.delay == 1.5 and first.rule is not None and first.rule.status == 503
        assert faults.decide("create_token", "svc").rule is None

    def test_probability_uses_seeded_rng(self) -> None:
        """The same seed gives the same sequence of fault decisions."""

        def run() -> list[bool]:
            faults = Faults(random.Random(42))
            faults.add(parse_rule({"route": "*", "action": "error", "probability": 0.5}))
            return [faults.decide("whoami", None).rule is not None for _ in range(50)]

        assert run() == run() and 0 < sum(run()) < 50

    def test_username_filter(self) -> None:
        """A rule with a username fires only for that account (any letter case)."""
        faults = Faults()
        faults.add(parse_rule({"route": "*", "action": "drop_before_commit", "username": "svc_a"}))
        assert faults.decide("list_tokens", "SVC_A").rule is not None
        assert faults.decide("list_tokens", "svc_b").rule is None

    def test_retry_after_rendering(self) -> None:
        """Whole seconds render as integers, fractions as decimals."""
        assert (retry_after_header(1.0), retry_after_header(0.25)) == ("1", "0.25")

    @pytest.mark.parametrize(
        ("method", "path", "route"),
        [
            ("POST", "/v1/users/a/tokens", "create_token"),
            ("GET", "/v1/users/a/tokens", "list_tokens"),
            ("DELETE", "/v1/users/a/tokens/x", "revoke_token"),
            ("POST", "/v1/users", "create_user"),
            ("DELETE", "/v1/users/a", "delete_user"),
            ("GET", "/v1/users/a/instances", "get_instances"),
            ("PUT", "/v1/users/a/instances", "put_instances"),
            ("GET", "/v1/active_accounts", "active_accounts"),
            ("GET", "/_sim/whoami", "whoami"),
            ("GET", "/v1/users", "unknown"),
            ("PUT", "/v1/users/a/tokens", "unknown"),
            ("GET", "/v1/users/a/tokens/", "unknown"),
        ],
    )
    def test_resolve(self, method: str, path: str, route: str) -> None:
        """Paths and methods map to stable route names; anything else is unknown."""
        assert resolve(method, path)[0] == route

    def test_offset_clock(self) -> None:
        """The offset clock moves by advance and jumps by set_offset."""
        clock = OffsetClock(lambda: START)
        clock.advance(10)
        clock.advance(5)
        assert clock() == START + timedelta(seconds=15)
        clock.set_offset(-1)
        assert clock() == START - timedelta(seconds=1)
