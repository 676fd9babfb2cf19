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

__all__ = ["import_httpx", "import_structlog"]


def import_structlog(*, want_rich: bool) -> None:
    """Import structlog once; with `want_rich=False`, without letting it load rich."""
    _import_without_rich("structlog", want_rich=want_rich)


def import_httpx() -> None:
    """Import httpx without the rich its command-line client pulls in (`httpx._main`).

    Every acting command makes the admin-token probe, so every scheduled no-op imports
    httpx; rich comes along only if something already loaded it (console logs).
    """
    _import_without_rich("httpx", want_rich=False)


def _import_without_rich(module: str, *, want_rich: bool) -> None:
    if module in sys.modules or want_rich or "rich" in sys.modules:
        importlib.import_module(module)
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` -> ImportError
    try:
        importlib.import_module(module)
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]

