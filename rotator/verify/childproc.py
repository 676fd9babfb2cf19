"""Child processes (hooks, `command` checks): a minimal environment and bounded, redacted output.

A child never inherits rotator's environment, which holds the org-admin token and the
backends' credentials (`VAULT_TOKEN`, AppRole ids, AWS keys). It gets only:

    PATH, HOME, LANG, LC_*, TZ, TMPDIR   from rotator's environment, when set
    what its config table's `env` lists
    the ROTATOR_* facts of the run
    MOTHERDUCK_TOKEN                     the new token, only where configured

Its stdout and stderr are read together, at most `CAPTURE_BYTES` of them (the last ones
are kept, since a failure is usually explained at the end) and within its timeout, after
which its whole process group is killed. What it printed is then redacted (every known
secret and credential shape) before it is cut to `MESSAGE_CHARS` for a message: nothing a
child prints reaches a log, the run record, the audit trail or a notification raw.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rotator.secret import Secret

__all__ = ["CAPTURE_BYTES", "MESSAGE_CHARS", "ChildTimedOut", "Finished", "child_env", "run_child"]

PASSED_THROUGH: Final = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")
CAPTURE_BYTES: Final = 64 * 1024
MESSAGE_CHARS: Final = 500
_DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"


class ChildTimedOut(Exception):
    """The child outlived its timeout; its process group was killed."""


@dataclass(frozen=True, slots=True)
class Finished:
    """How a child ended: its exit status and its output, already redacted and bounded."""

    returncode: int
    output: str


def child_env(
    *,
    listed: Mapping[str, str],
    facts: Mapping[str, str | None],
    token: Secret | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a child gets: the basics, its table's `env`, ROTATOR_* facts, token.

    `facts` keys become `ROTATOR_<KEY>`; `token` becomes MOTHERDUCK_TOKEN. Nothing else of
    rotator's environment is passed on.
    """
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k in PASSED_THROUGH or k.startswith("LC_")}
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update(listed)
    env.update({f"ROTATOR_{k.upper()}": v or "" for k, v in facts.items()})
    if token is not None:
        env["MOTHERDUCK_TOKEN"] = token.reveal()
    return env


def run_child(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None, timeout: float
) -> Finished:
    """Run `argv`; raise ChildTimedOut after `timeout` seconds, OSError if it cannot start.

    The child runs in its own session so a timeout kills what it started as well. Once it
    exits, what is already in the pipe is read and the rest is not waited for (a background
    grandchild holding the pipe open cannot stall the run).
    """
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    tail = bytearray()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                exited = proc.poll() is not None
                left = deadline - time.monotonic()
                if left <= 0:
                    if exited:
                        break  # a grandchild still writing: what we have is enough
                    raise ChildTimedOut
                ready = selector.select(0 if exited else min(left, 0.5))
                if not ready:
                    if exited:
                        break
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                tail += chunk
                del tail[:-CAPTURE_BYTES]
        returncode = proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    except (ChildTimedOut, subprocess.TimeoutExpired):
        _kill_group(proc)
        raise ChildTimedOut from None
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            _kill_group(proc)
    text = bytes(tail).decode(errors="replace").strip()
    from rotator.log import scrub  # structlog: not imported by a config load (checks.py)

    return Finished(returncode, scrub(text, MESSAGE_CHARS))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
