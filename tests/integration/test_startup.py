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
    assert not modules & {"pydantic", "httpx", "structlog", "rich", "rich.console", "rotator.workflow"}


def test_scheduled_noop_loads_no_rich(simulator: Any, tmp_path: Path) -> None:
    """A JSON-logged `rotate` with nothing due imports no rich.

    Its one request, the admin-token probe every acting command makes (a broken admin
    token fails the day it breaks), loads httpx but not httpx's rich-based command line.
    """
    (tmp_path / "state" / "accounts").mkdir(parents=True)
    created = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    doc = {"schema": 1, "account": "svc_idle", "runs": [], "version": 1,
           "current_token": {"id": "t1", "created_ts": created}}
    (tmp_path / "state" / "accounts" / "svc_idle.json").write_text(json.dumps(doc))
    (tmp_path / "rotator.toml").write_text(
        f'[motherduck]\napi_url = "{simulator.url}"\nadmin_token_env = "TEST_MD_ADMIN"\n'
        '[state]\npath = "state"\n'
        '[[accounts]]\nusername = "svc_idle"\n[[accounts.backends]]\ntype = "file"\n'
        'path = "s.json"\n'
    )
    env = {**os.environ, "ROTATOR_CONFIG": str(tmp_path / "rotator.toml"),
           "TEST_MD_ADMIN": simulator.admin_token}
    modules = imported(["--log-format", "json", "rotate", "--all"], tmp_path, env)
    assert "structlog" in modules or "structlog.dev" in modules
    # A blocked `import rich` still prints one importtime line; a real load brings its parts.
    assert not modules & {"rich.console", "rich.traceback"}
