"""rotator.verify.childproc: what a hook or command check inherits, and what of its output survives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rotator.secret import Secret
from rotator.verify.childproc import MESSAGE_CHARS, ChildTimedOut, child_env, run_child
from tests.support.procs import wait_until

PY = sys.executable


class TestChildEnv:
    def test_only_the_basics_the_table_the_facts_and_the_token(self) -> None:
        """Credentials in rotator's environment never reach a child; listed things do."""
        environ = {
            "PATH": "/bin",
            "HOME": "/home/r",
            "LANG": "C.UTF-8",
            "LC_ALL": "C",
            "TZ": "UTC",
            "MOTHERDUCK_ADMIN_TOKEN": "admin-secret-value",
            "VAULT_TOKEN": "hvs.vault-secret",
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
            "PYTHONPATH": "/src",
        }
        env = child_env(
            listed={"TARGET": "prod"},
            facts={"account": "svc_a", "run_id": None},
            token=Secret("new-token-value-123"),
            environ=environ,
        )
        assert env == {
            "PATH": "/bin",
            "HOME": "/home/r",
            "LANG": "C.UTF-8",
            "LC_ALL": "C",
            "TZ": "UTC",
            "TARGET": "prod",
            "ROTATOR_ACCOUNT": "svc_a",
            "ROTATOR_RUN_ID": "",
            "MOTHERDUCK_TOKEN": "new-token-value-123",
        }

    def test_no_token_unless_given_and_a_default_path(self) -> None:
        """Without a token there is no MOTHERDUCK_TOKEN; PATH is never missing."""
        env = child_env(listed={}, facts={}, environ={"MOTHERDUCK_TOKEN": "leftover-token"})
        assert "MOTHERDUCK_TOKEN" not in env
        assert env["PATH"]


class TestRunChild:
    def test_output_is_redacted_before_it_is_cut(self) -> None:
        """A secret straddling the 500-character edge is masked whole, not cut in two."""
        secret = Secret("straddling-secret-" + "z" * 60)
        for keep in (1, 24, 40, len(secret) - 1):
            code = f"import sys; sys.stdout.write({secret.reveal()!r} + '.' * {500 - keep}); sys.exit(2)"
            done = run_child([PY, "-c", code], env={"PATH": "/bin"}, cwd=None, timeout=30)
            assert done.returncode == 2
            assert len(done.output) <= MESSAGE_CHARS + 3
            assert "zzzzzzzz" not in done.output and "straddling" not in done.output

    def test_timeout_kills_the_process_group(self, tmp_path: Path) -> None:
        """A child and its grandchild are both killed when the timeout passes."""
        pid_file = tmp_path / "grandchild.pid"
        code = (
            "import subprocess, sys, time; "
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
        )
        with pytest.raises(ChildTimedOut):
            run_child([PY, "-c", code], env={"PATH": "/bin"}, cwd=None, timeout=2)
        status = Path(f"/proc/{int(pid_file.read_text())}/status")

        def gone() -> bool:  # SIGKILL was sent; dying takes a moment, sleeping 60 s would not
            return not status.exists() or "zombie" in status.read_text()

        wait_until(gone, timeout=10, what="the grandchild to die")

    def test_a_background_grandchild_does_not_hold_the_run(self) -> None:
        """A child that exits while its background grandchild keeps the pipe open is done."""
        code = (
            "import subprocess, sys; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3)']); "
            "print('bye')"
        )
        done = run_child([PY, "-c", code], env={"PATH": "/bin"}, cwd=None, timeout=20)
        assert (done.returncode, done.output) == (0, "bye")

    def test_output_is_bounded_in_memory(self) -> None:
        """A child printing 50 MB leaves a message of at most MESSAGE_CHARS characters."""
        code = "import sys\nfor _ in range(800): sys.stdout.write('y' * 65536)\nsys.exit(1)"
        done = run_child([PY, "-c", code], env={"PATH": "/bin"}, cwd=None, timeout=60)
        assert done.returncode == 1 and set(done.output) <= {"y", "."}
        assert len(done.output) <= MESSAGE_CHARS + 3
        assert done.output.endswith("y")
