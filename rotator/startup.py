"""Start-up cost: import structlog without rich when nothing will be drawn for a person.

structlog imports rich at import time, when it is installed, for its console tracebacks
(some 60 ms of a scheduled run on a small machine). Under cron, systemd or Kubernetes
(stderr not a terminal, JSON logs) nothing uses it, so the entry point imports structlog
with `rich` hidden; rich stays importable for anything that draws later (status tables
on a terminal import it themselves).
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["import_structlog", "skip_httpx_cli"]


def import_structlog(*, want_rich: bool) -> None:
    """Import structlog once; with `want_rich=False`, without letting it load rich."""
    if "structlog" in sys.modules or want_rich or "rich" in sys.modules:
        importlib.import_module("structlog")
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` -> ImportError
    try:
        importlib.import_module("structlog")
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]


def skip_httpx_cli() -> None:
    """Keep httpx from importing its own command line tool (and with it rich and click).

    `import httpx` tries `httpx._main` and falls back quietly when it cannot be imported;
    rotator never uses that tool, and with rich installed it costs every run that makes a
    request (the admin-token probe of a no-op pass) rich's import time.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
