"""Hook commands run at fixed points of a rotation (restart a deployment, notify a channel).

Points: `after_store`, `after_promote`, `after_revoke`, `on_failure`. A hook gets the
account, run id and token ids in its environment; the new token's secret only when it
opts in with `pass_token = true` (as MOTHERDUCK_TOKEN, never on the command line). It
does not inherit rotator's environment (no admin token, no backend credential): only
PATH, HOME, LANG, LC_*, TZ, TMPDIR and what its table's `env` lists (`rotator.verify.childproc`).
Its output is captured, redacted, bounded and reported on failure. A resumed run may run
a hook whose outcome was not recorded a second time, so hooks should be safe to repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import structlog

from rotator.errors import HookFailed
from rotator.secret import Secret
from rotator.verify.childproc import ChildTimedOut, child_env, run_child
from rotator.verify.hookspec import HookPoint, Hooks, HookSpec

__all__ = ["HookPoint", "HookSpec", "Hooks", "run_hook"]

log = structlog.get_logger("rotator.hooks")


def run_hook(
    point: HookPoint,
    spec: HookSpec,
    *,
    facts: Mapping[str, str | None],
    token: Secret | None = None,
    cwd: Path | None = None,
) -> None:
    """Run one hook; raise HookFailed on a non-zero exit, a timeout or a missing program.

    `facts` become ROTATOR_* variables (account, run_id, old/new token ids, ...); `cwd`
    (the config file's directory) is where relative commands are found.
    """
    env = child_env(
        listed={**spec.env, "ROTATOR_HOOK": point},
        facts=facts,
        token=token if spec.pass_token else None,
    )
    try:
        done = run_child(spec.command, env=env, cwd=cwd, timeout=spec.timeout.total_seconds())
    except ChildTimedOut:
        raise HookFailed(
            f"{point} hook {spec.command[0]!r} timed out after {spec.timeout.total_seconds():g}s",
            hook=point,
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the command
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        message = f"{point} hook cannot run {spec.command[0]!r}: {why}"
        raise HookFailed(message, hook=point) from None
    if done.returncode != 0:
        raise HookFailed(
            f"{point} hook {spec.command[0]!r} exited {done.returncode}: {done.output}",
            hook=point,
        )
    log.info("hook.succeeded", hook=point, command=spec.command[0])
