"""Start-up cost: import only what the command uses.

structlog without rich when nothing will be drawn for a person:

structlog imports rich at import time, when it is installed, for its console tracebacks
(some 60 ms of a scheduled run on a small machine). Under cron, systemd or Kubernetes
(stderr not a terminal, JSON logs) nothing uses it, so the entry point imports structlog
with `rich` hidden; rich stays importable for anything that draws later (status tables
on a terminal import it themselves).

asyncio deferred (`defer_import("asyncio")`, the Lambda handler, before structlog):
`structlog.stdlib` imports asyncio for its async logger classes only (~8 ms of a cold
start, net of the socket and ssl modules botocore needs anyway); rotator is synchronous.
asyncio is then registered as a deferred module: executed at its first attribute access,
if one ever comes, so anything that does use it still works.

AWS clients straight from botocore (`aws_client`): boto3 adds nothing to a low-level
client but its own import (s3transfer and boto3's resource machinery, ~20 ms of a Lambda
cold start). Credentials, region and retries come from botocore either way (the same
environment variables, config files and instance/container roles).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["aws_client", "defer_import", "import_httpx", "import_structlog"]

_SESSION: Any = None
_SESSION_LOCK = threading.Lock()  # a botocore session is not safe to share unguarded
_DEFERRED_LOCK = threading.RLock()  # a deferred module runs once, whichever thread asks
_RUNNING: dict[int, bool] = {}  # deferred modules whose code is running now


def import_structlog(*, want_rich: bool) -> None:
    """Import structlog once; with `want_rich=False`, without letting it load rich."""
    _import_without_rich("structlog", want_rich=want_rich)


def defer_import(name: str) -> None:
    """Register module `name` (unless imported already) to run at its first real use.

    Later `import name` statements bind it without running it; the first attribute
    access runs it (once, under a lock). For a module that may never be used: one that
    is used anyway is only made later, not cheaper.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _Deferred
    sys.modules[name] = module


class _Deferred(types.ModuleType):
    """A module whose code runs at the first use of any attribute but `__spec__`.

    importlib's own LazyLoader cannot serve here: every later `import name` reads
    `name.__spec__` (is it still initialising?), which would run it at once. The first
    use runs the code under a lock, so another thread touching the module meanwhile
    waits for it to finish instead of seeing it half made.
    """

    def __getattribute__(self, attr: str) -> Any:
        get = types.ModuleType.__getattribute__
        if attr == "__spec__":
            return get(self, attr)
        with _DEFERRED_LOCK:
            if type(self) is _Deferred and not _RUNNING.get(id(self)):
                _RUNNING[id(self)] = True  # its own code's attribute uses, while it runs
                try:
                    spec = get(self, "__spec__")
                    spec.loader.exec_module(self)
                finally:
                    del _RUNNING[id(self)]
                self.__class__ = types.ModuleType  # type: ignore[assignment]  # ordinary now
        return get(self, attr)


def import_httpx() -> None:
    """Import httpx without its command-line client (`httpx._main`) or async back-ends.

    httpx's package tries `from ._main import main`, which imports click, pygments and
    rich (~30 ms even when rich itself is blocked), and falls back to a stub on
    ImportError; httpcore likewise tries anyio (whose import reads its own source through
    `inspect.getsource`) and trio for its async classes. rotator's HTTP is synchronous
    (`httpx.Client`) and never uses either. Every acting command makes the admin-token
    probe, so every scheduled no-op imports httpx.
    """
    _import_without("httpx", "httpcore", hidden=("httpx._main", "rich", "anyio", "trio"))


def _import_without_rich(module: str, *, want_rich: bool) -> None:
    if want_rich or "rich" in sys.modules:
        importlib.import_module(module)
        return
    _import_without(module, hidden=("rich",))


def _import_without(*modules: str, hidden: tuple[str, ...]) -> None:
    """Import `modules` while each of `hidden` (not yet loaded) raises ImportError."""
    if all(module in sys.modules for module in modules):
        return
    blocked = [name for name in hidden if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` -> ImportError
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def aws_client(service: str, *, region: str | None = None, **kwargs: Any) -> Any:
    """A botocore client for `service` (what `boto3.client` returns), without importing boto3.

    One botocore session per process, made on first use (its model loader is
    `rotator.util.awsloader.DirectLoader`); `kwargs` go to `create_client` (`endpoint_url`,
    `config`).
    """
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            import botocore.session

            from rotator.util.awsloader import direct_loader

            session = botocore.session.get_session()
            # Models found without first listing all ~400 services botocore ships.
            session.register_component(
                "data_loader", direct_loader(session.get_component("data_loader"))
            )
            _SESSION = session
        return _SESSION.create_client(service, region_name=region, **kwargs)
