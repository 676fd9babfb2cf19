"""`rotator revoke USERNAME TOKEN_ID`: revoke one token by hand, safely, and confirm it gone.

For the orphans `rotator drift` reports (`unknown_live_token`, `orphaned_run_token`). It
runs under the account's lease, so no rotation moves underneath it, and refuses a token
that anything still references — the state store's current token, a token of the
unfinished run, a value some backend serves (by token id or by fingerprint), or a
backend it could not read — unless forced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from rotator.engine.outcome import Outcome
from rotator.engine.runrecord import TokenRef, identify
from rotator.errors import BackendError, ConfigError, MotherDuckError

if TYPE_CHECKING:
    from rotator.engine.runcontext import RunContext

__all__ = ["references", "revoke_one"]

log = structlog.get_logger("rotator.workflow")


def revoke_one(ctx: RunContext, token_id: str, *, force: bool) -> Outcome:
    """Revoke `token_id` of the account and confirm it left the live list.

    Raises ConfigError (nothing touched) when the token is not live or is referenced and
    `force` is not set; MotherDuckError when the revoke cannot be confirmed. Safe to repeat.
    """
    name = ctx.name
    token = next((t for t in ctx.e.client.list_tokens(name) if t.id == token_id), None)
    if token is None:
        raise ConfigError(
            f"token id {token_id} is not a live token of {name!r}; `rotator tokens {name}` "
            "lists them"
        )
    users = references(ctx, token_id)
    if users and not force:
        more = f" (and {len(users) - 1} more)" if len(users) > 1 else ""
        raise ConfigError(
            f"token {token_id} is {users[0]}{more}; revoking it could break its consumers: "
            "pass --force to revoke it anyway"
        )
    if users:
        log.warning("token.revoke_forced", token_id=token_id, references=users)
    ctx._fence("motherduck.revoke")  # I4: a command that lost its lease revokes nothing
    ctx.e.client.revoke_token(name, token_id)
    if any(t.id == token_id for t in ctx.e.client.list_tokens(name)):
        raise MotherDuckError(
            f"token {token_id} of {name!r} is still listed after its revoke; run "
            f"`rotator revoke {name} {token_id}` again"
        )
    log.info("token.revoked", token_id=token_id, by="rotator revoke")
    named = f" ({token.name})" if token.name else ""
    return Outcome(
        name,
        "revoked",
        f"revoked {token_id}{named}; confirmed gone from the live list",
        old_token_id=token_id,
        revoked=True,
    )


def references(ctx: RunContext, token_id: str) -> list[str]:
    """Who still refers to `token_id`, in words (empty: nobody rotator knows of)."""
    found = []
    record = ctx.record
    if record.current_token is not None and record.current_token.id == token_id:
        found.append("the state store's current token")
    run = ctx._active_run()
    refs: list[TokenRef] = [t for t in (record.current_token,) if t is not None]
    if run is not None:
        for role, ref in (("old", run.old_token), ("new", run.new_token)):
            if ref is not None:
                refs.append(ref)
                if ref.id == token_id:
                    found.append(f"the {role} token of unfinished run {run.run_id}")
    for run_id in record.runs[-10:]:
        past = ctx.e.load_run(run_id)
        if past is not None:
            refs += [t for t in (past.old_token, past.new_token) if t is not None]
    for label, backend in ctx.backends.items():
        try:
            stored = backend.read_current()
        except BackendError as exc:
            found.append(f"maybe held by {label}, which could not be read ({exc})")
            continue
        if stored is None:
            continue
        held, _, claimed = identify(stored, refs, ctx.key)
        if held == token_id or claimed == token_id:
            found.append(f"served by backend {label}")
        elif held is None:
            found.append(f"maybe served by backend {label} (its value's token id is unknown)")
    return found

