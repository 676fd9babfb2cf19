"""What a command imports (`python -X importtime`): an assertion on modules, not on time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def imported(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rotator.cli", *argv],
        capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_help_imports_no_engine(tmp_path: Path) -> None:
    """`rotator --help` loads neither pydantic, httpx, structlog nor rich."""
    modules = imported(["--help"], tmp_path)
    assert not modules & {"pydantic", "httpx", "structlog", "rich", "rich.console", "rotator.engine.workflow"}


def _idle_account(tmp_path: Path, api_url: str) -> dict[str, str]:
    """A config with one adopted account that is not due; the environment to run it."""
    (tmp_path / "state" / "accounts").mkdir(parents=True)
    created = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    doc = {"schema": 1, "account": "svc_idle", "runs": [], "version": 1,
           "current_token": {"id": "t1", "created_ts": created}}
    (tmp_path / "state" / "accounts" / "svc_idle.json").write_text(json.dumps(doc))
    (tmp_path / "rotator.toml").write_text(
        f'[motherduck]\napi_url = "{api_url}"\nadmin_token_env = "TEST_MD_ADMIN"\n'
        '[state]\npath = "state"\n'
        '[[accounts]]\nusername = "svc_idle"\n[[accounts.backends]]\ntype = "file"\n'
        'path = "s.json"\n'
    )
    return {**os.environ, "ROTATOR_CONFIG": str(tmp_path / "rotator.toml")}


def test_status_loads_no_httpx_or_rich(tmp_path: Path) -> None:
    """A JSON-logged `status` (reads the state store only) never imports httpx or rich."""
    env = _idle_account(tmp_path, "http://127.0.0.1:9")
    modules = imported(["--log-format", "json", "status"], tmp_path, env)
    assert "structlog" in modules or "structlog.dev" in modules
    # A blocked `import rich` still prints one importtime line; a real load brings its parts.
    assert not modules & {"httpx", "httpx._client", "rich.console", "rich.traceback"}


def test_scheduled_noop_rotate_probes_the_admin_token_without_rich(
    simulator: Any, tmp_path: Path
) -> None:
    """A JSON-logged `rotate --all` with nothing due: no rich, one admin-token probe.

    The probe (`GET /v1/active_accounts`, issue 14: a broken admin token fails the run the
    day it breaks) needs httpx, so that one is loaded; nothing else is called.
    """
    env = {**_idle_account(tmp_path, simulator.url), "TEST_MD_ADMIN": simulator.admin_token}
    simulator.clear_requests()
    modules = imported(["--log-format", "json", "rotate", "--all"], tmp_path, env)
    # A blocked `import rich.console` (httpx's own CLI) still prints its importtime line;
    # a real load brings these parts.
    assert not modules & {"rich.text", "rich.style", "rich.segment", "rich.traceback"}
    assert [r["route"] for r in simulator.requests()] == ["active_accounts"]
