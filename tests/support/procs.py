"""Start and stop the real servers the integration tests talk to.

Every server runs as a child process on a free loopback port, is polled until it
answers (with a deadline, never a fixed sleep) and is stopped by the pid we started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["GiveUp", "ServerProcess", "free_port", "wait_until"]


class GiveUp(Exception):
    """Raised by a polled predicate to stop polling at once (e.g. the server died)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll `predicate` until it returns True; raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except GiveUp:
            raise
        except Exception as exc:  # the server may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from last_exc


class ServerProcess:
    """A child process we started, with its log file, stopped by its own pid."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, ready: Callable[[], bool], *, timeout: float = 60.0, what: str) -> None:
        """Poll `ready` until true; fail early with the log if the process died."""

        def check() -> bool:
            if self.proc.poll() is not None:
                raise GiveUp(f"{what} exited with {self.proc.returncode}: {self.log_tail()}")
            return ready()

        try:
            wait_until(check, timeout=timeout, what=what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; log: {self.log_tail()}") from exc

    def log_tail(self, n: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process group we started, then kill it if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._log.close()


def run_with_terminal_stderr(
    argv: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float = 120
) -> tuple[int, str, str]:
    """Run `argv` with stderr on a pseudo-terminal (what a person watching sees), stdout piped.

    Returns (exit status, stdout, what the terminal received).
    """
    import pty
    import threading

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the child's side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = proc.communicate(timeout=timeout)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, stdout, b"".join(chunks).decode(errors="replace")
