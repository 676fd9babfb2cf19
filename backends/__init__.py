"""Secret backends: where rotated tokens are written.

Built-in types (`file`, `vault`, `aws-secrets-manager`) and third-party ones are all found
through the `rotator.backends` entry-point group, so a plugin is a peer of the built-ins.
A lookup reads the metadata of every installed distribution (milliseconds, and the engine
builds an account's backends on every rotation), so a found class is remembered for the
life of the process; `clear_cache()` forgets them (tests that install plugins at runtime).
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from backends.base import Backend, BackendFactory, StoredToken, TokenRecord
from rotator.errors import ConfigError

if TYPE_CHECKING:
    from backends.models import BackendConfig

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendFactory",
    "StoredToken",
    "TokenRecord",
    "available_types",
    "clear_cache",
    "load_factory",
    "validate_config",
]

_GROUP = "rotator.backends"


def available_types() -> list[str]:
    """Names of every installed backend type."""
    return sorted({ep.name for ep in entry_points(group=_GROUP)})


def load_factory(type_name: str) -> type[BackendFactory]:
    """Load the backend class registered as `type_name` (remembered once found).

    Raises ConfigError naming the known types when `type_name` is not installed, or when
    its module cannot be imported; failures are not remembered, so installing the missing
    package and calling again works.
    """
    return _load_factory(type_name)


def clear_cache() -> None:
    """Forget the backend classes found so far; the next lookup reads entry points again."""
    _load_factory.cache_clear()


@functools.cache
def _load_factory(type_name: str) -> type[BackendFactory]:
    matches = [ep for ep in entry_points(group=_GROUP) if ep.name == type_name]
    if not matches:
        known = ", ".join(available_types()) or "none"
        raise ConfigError(f"type: unknown backend type {type_name!r} (installed: {known})")
    try:
        factory: type[BackendFactory] = matches[0].load()
    except ImportError as exc:
        raise ConfigError(
            f"type: backend {type_name!r} cannot be loaded ({exc}); is its extra installed, "
            f"e.g. pip install 'rotator[{type_name.split('-')[0]}]'?"
        ) from exc
    return factory


def __getattr__(name: str) -> Any:
    """`BackendConfig` is imported on first use (see backends.base): no pydantic at import."""
    if name == "BackendConfig":
        from backends.models import BackendConfig

        return BackendConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_config(raw: dict[str, Any]) -> BackendConfig:
    """Validate one `[[accounts.backends]]` table with its backend's own model.

    Raises ValidationError (field paths relative to the table) or ConfigError.
    """
    type_name = raw.get("type")
    if not isinstance(type_name, str):
        raise ConfigError("type: required, one of " + ", ".join(available_types()))
    factory = load_factory(type_name)
    return factory.Config.model_validate(raw)
