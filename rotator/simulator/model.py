"""The simulated MotherDuck organization: users, tokens, Duckling configs and a clock.

Pure logic, no I/O. `Model` answers each REST operation of the spec as a method that
takes the bearer token and the request's parts and returns the JSON answer, or raises an
`ApiError`. One re-entrant lock guards everything, so the HTTP server's threads may call
it freely. Lookups are by dict (user key, token id, secret): no per-request scan over all
tokens. `dump()`/`load()` turn the whole state into JSON-safe data for the state file.

Authorization (checked in this order): a live token (else 401); not read_scaling (else
403); then, except for a user creating a token for themself, an org admin (else 403);
then the user in the path must exist (else JSON 404); then the body is validated (400).
"""

from __future__ import annotations

import copy
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from rotator.simulator.apierror import ApiError, bad_request, forbidden, not_found, unauthorized
from rotator.simulator.records import (
    Clock,
    Token,
    User,
    make_secret,
    parse_time,
    rfc3339,
    utc_now,
)
from rotator.simulator.validation import (
    parse_instances,
    parse_token_request,
    parse_username,
    username_issue,
)

__all__ = ["ADMIN_ROLE_ISSUE", "Model"]

ADMIN_ROLE_ISSUE: Final = "minimum role org_admin is required"
STATE_VERSION: Final = 1


class Model:
    """The organization; every public method is atomic under one lock."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.generation = 0  # bumped by every mutation; the state file saves when it moves
        self._lock = threading.RLock()
        self._users: dict[str, User] = {}  # lower-cased username -> user
        self._tokens: dict[str, Token] = {}  # id -> every token ever issued
        self._by_secret: dict[str, Token] = {}
        self._unrevoked: dict[str, dict[str, Token]] = {}  # user key -> id -> token
        self._active: dict[str, None] = {}  # user keys whose Duckling config was set

    # -- authentication -------------------------------------------------------------

    def _authenticate(self, bearer: str | None) -> Token:
        token = self._by_secret.get(bearer) if bearer else None
        if token is None or not token.live(self.clock()):
            raise unauthorized()
        return token

    def _rest_caller(self, bearer: str | None) -> User:
        token = self._authenticate(bearer)
        if token.token_type == "read_scaling":
            raise forbidden("read_scaling tokens cannot use the REST API")
        return self._users[token.username.lower()]

    def _admin(self, bearer: str | None) -> User:
        caller = self._rest_caller(bearer)
        if not caller.admin:
            raise forbidden(ADMIN_ROLE_ISSUE)
        return caller

    def _user(self, username: str) -> User:
        user = self._users.get(username.lower())
        if user is None:
            raise not_found(f"user {username} not found")
        return user

    # -- REST operations ------------------------------------------------------------

    def create_token(self, bearer: str | None, username: str, body: object) -> dict[str, Any]:
        """POST /v1/users/{username}/tokens: any user for themself, else an admin for an SA."""
        with self._lock:
            caller = self._rest_caller(bearer)
            target = self._users.get(username.lower())
            if target is not caller:
                if not caller.admin:
                    raise forbidden(ADMIN_ROLE_ISSUE)
                target = self._user(username)
                if not target.service_account:
                    raise forbidden("cannot create a token for another human user")
            request = parse_token_request(body)
            token = self._issue(target, request.name, request.token_type, request.ttl)
            return {"token": token.secret, **token.metadata()}

    def list_tokens(self, bearer: str | None, username: str) -> dict[str, Any]:
        """GET /v1/users/{username}/tokens: live tokens only, never secrets."""
        with self._lock:
            self._admin(bearer)
            user = self._user(username)
            now = self.clock()
            tokens = self._unrevoked.get(user.key, {}).values()
            return {"tokens": [t.metadata() for t in tokens if t.live(now)]}

    def revoke_token(self, bearer: str | None, username: str, token_id: str) -> dict[str, Any]:
        """DELETE /v1/users/{username}/tokens/{token_id}: 404 when not a live token of the user."""
        with self._lock:
            self._admin(bearer)
            user = self._user(username)
            token = self._unrevoked.get(user.key, {}).get(token_id)
            now = self.clock()
            if token is None or not token.live(now):
                raise not_found(f"token {token_id} not found")
            self._revoke(token, now)
            return {}

    def create_user(self, bearer: str | None, body: object) -> dict[str, Any]:
        """POST /v1/users: a new service account; duplicates (any case) are a 400."""
        with self._lock:
            self._admin(bearer)
            username = parse_username(body)
            if username.lower() in self._users:
                raise bad_request(["username: already exists"])
            self._add_user(username, admin=False, service_account=True)
            return {"username": username}

    def delete_user(self, bearer: str | None, username: str) -> dict[str, Any]:
        """DELETE /v1/users/{username}: the account and all its tokens go."""
        with self._lock:
            self._admin(bearer)
            user = self._user(username)
            now = self.clock()
            for token in list(self._unrevoked.get(user.key, {}).values()):
                self._revoke(token, now)
            self._unrevoked.pop(user.key, None)
            self._active.pop(user.key, None)
            del self._users[user.key]
            self.generation += 1
            return {"username": user.username}

    def get_instances(self, bearer: str | None, username: str) -> dict[str, Any]:
        """GET /v1/users/{username}/instances."""
        with self._lock:
            self._admin(bearer)
            return copy.deepcopy(self._user(username).config)

    def put_instances(self, bearer: str | None, username: str, body: object) -> dict[str, Any]:
        """PUT /v1/users/{username}/instances: body wrapped in `config`, answer unwrapped."""
        with self._lock:
            self._admin(bearer)
            user = self._user(username)
            user.config = parse_instances(body)
            user.config_set = True
            self._active[user.key] = None
            self.generation += 1
            return copy.deepcopy(user.config)

    def active_accounts(self, bearer: str | None) -> dict[str, Any]:
        """GET /v1/active_accounts: accounts whose config was PUT, one running duckling each."""
        with self._lock:
            self._admin(bearer)
            accounts = []
            for key in self._active:
                user = self._users[key]
                duckling = {"id": user.duckling_id, "type": "read_write", "status": "running"}
                accounts.append({"username": user.username, "ducklings": [duckling]})
            return {"accounts": accounts}

    def whoami(self, bearer: str | None) -> dict[str, Any]:
        """The data plane's `SELECT current_user`: any live token, read_scaling included."""
        with self._lock:
            token = self._authenticate(bearer)
            return {"current_user": token.username}

    # -- direct manipulation (CLI, control API, tests) --------------------------------

    def ensure_user(self, username: str, *, admin: bool = False) -> User:
        """Return the user, creating it (an admin human, or else a service account) if missing.

        Raises ValueError when the name breaks the username rules.
        """
        with self._lock:
            existing = self._users.get(username.lower())
            if existing is not None:
                return existing
            issue = username_issue(username)
            if issue:
                raise ValueError(issue)
            return self._add_user(username, admin=admin, service_account=not admin)

    def issue_token(
        self,
        username: str,
        name: str,
        *,
        token_type: str = "read_write",
        ttl: int | None = None,
        secret: str | None = None,
    ) -> Token:
        """Mint a token for an existing user without any auth; `secret` fixes its value."""
        with self._lock:
            user = self._users[username.lower()]
            if secret is not None and secret in self._by_secret:
                existing = self._by_secret[secret]
                if existing.live(self.clock()) and existing.username == user.username:
                    return existing
                raise ValueError("that secret already belongs to another token")
            return self._issue(user, name, token_type, ttl, secret)

    def seed(self, body: object) -> dict[str, Any]:
        """`POST /_sim/seed`: create the user if missing (role kept if present), then a token."""
        if not isinstance(body, dict):
            parse_username(body)  # raises the 400 for a malformed or non-object body
            raise RuntimeError("unreachable")
        issues: list[str] = []
        issue = username_issue(body.get("username"))
        if issue:
            issues.append(issue)
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            issues.append("admin: must be a boolean")
        fields = {
            "name": body.get("token_name", "initial"),
            "ttl": body.get("ttl"),
            "token_type": body.get("token_type"),
        }
        request = None
        try:
            request = parse_token_request(fields)
        except ApiError as exc:
            issues.extend(text.replace("name:", "token_name:", 1) for text in exc.issues)
        if issues or request is None:
            raise bad_request(issues)
        with self._lock:
            user = self.ensure_user(body["username"], admin=admin)
            token = self._issue(user, request.name, request.token_type, request.ttl)
            return {
                "username": user.username,
                "id": token.id,
                "token": token.secret,
                "name": token.name,
            }

    def state(self) -> dict[str, Any]:
        """Every user and every token ever issued (with secrets), for `/_sim/state`."""
        with self._lock:
            now = self.clock()
            return {
                "now": rfc3339(now),
                "users": [user.view() for user in self._users.values()],
                "tokens": [token.view(now) for token in self._tokens.values()],
            }

    # -- persistence ------------------------------------------------------------------

    def dump(self) -> tuple[int, dict[str, Any]]:
        """(generation, JSON-safe snapshot of everything) taken atomically."""
        with self._lock:
            users = [
                {**user.view(), "created_ts": user.created_at.isoformat()}
                for user in self._users.values()
            ]
            tokens = [
                {
                    "id": t.id,
                    "username": t.username,
                    "name": t.name,
                    "token_type": t.token_type,
                    "secret": t.secret,
                    "created_at": t.created_at.isoformat(),
                    "expire_at": None if t.expire_at is None else t.expire_at.isoformat(),
                    "revoked_at": None if t.revoked_at is None else t.revoked_at.isoformat(),
                }
                for t in self._tokens.values()
            ]
            return self.generation, {"version": STATE_VERSION, "users": users, "tokens": tokens}

    @classmethod
    def load(cls, data: dict[str, Any], clock: Clock = utc_now) -> Model:
        """Rebuild a model from `dump()` output; raises ValueError on an unknown format."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        model = cls(clock)
        for raw in data["users"]:
            user = User(
                username=raw["username"],
                admin=raw["admin"],
                service_account=raw["service_account"],
                created_at=datetime.fromisoformat(raw["created_ts"]),
                config=raw["config"],
                config_set=raw["config_set"],
                duckling_id=raw["duckling_id"],
            )
            model._users[user.key] = user
            if user.config_set:
                model._active[user.key] = None
        for raw in data["tokens"]:
            token = Token(
                id=raw["id"],
                username=raw["username"],
                name=raw["name"],
                token_type=raw["token_type"],
                secret=raw["secret"],
                created_at=datetime.fromisoformat(raw["created_at"]),
                expire_at=parse_time(raw["expire_at"]),
                revoked_at=parse_time(raw["revoked_at"]),
            )
            model._index(token)
        return model

    # -- internals ----------------------------------------------------------------------

    def _add_user(self, username: str, *, admin: bool, service_account: bool) -> User:
        user = User(username, admin, service_account, created_at=self.clock())
        self._users[user.key] = user
        self.generation += 1
        return user

    def _issue(
        self, user: User, name: str, token_type: str, ttl: int | None, secret: str | None = None
    ) -> Token:
        now = self.clock()
        token_id = str(uuid.uuid4())
        token = Token(
            id=token_id,
            username=user.username,
            name=name,
            token_type=token_type,
            secret=secret or make_secret(user.username, token_id, token_type, now),
            created_at=now,
            expire_at=None if ttl is None else now + timedelta(seconds=ttl),
        )
        self._index(token)
        self.generation += 1
        return token

    def _index(self, token: Token) -> None:
        self._tokens[token.id] = token
        if token.revoked_at is None:
            self._by_secret[token.secret] = token
            self._unrevoked.setdefault(token.username.lower(), {})[token.id] = token

    def _revoke(self, token: Token, now: datetime) -> None:
        token.revoked_at = now
        self._by_secret.pop(token.secret, None)
        self._unrevoked.get(token.username.lower(), {}).pop(token.id, None)
        self.generation += 1
