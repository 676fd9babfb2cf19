"""Secret backends: where rotated tokens are written.

Third-party types are found through the `rotator.backends` entry-point group, where the
built-in ones (`file`, `vault`, `aws-secrets-manager`) are registered too; a built-in
name always means the built-in class (`_BUILT_IN`, the same targets as pyproject.toml's
entry points), as a built-in check type does (rotator/verify/checks.py), so a lookup of
one reads no metadata: importing importlib.metadata and reading every installed
distribution's entry points is ~9 ms of every start of `rotator` and every Lambda cold
start, for the types nearly every config uses. A plugin's lookup reads the metadata, and
a found class is remembered for the life of the process (the engine builds an account's
backends on every rotation); `clear_cache()` forgets them (tests that install plugins at
runtime).
"""

from __future__ import annotations

import functools
import importlib
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
# The built-in types, as pyproject.toml registers them (tests/unit/test_public_names.py
# holds the two lists equal).
_BUILT_IN = {
    "file": "backends.file:FileBackend",
    "vault": "backends.vault:VaultBackend",
    "aws-secrets-manager": "backends.aws_secrets_manager:SecretsManagerBackend",
}


def available_types() -> list[str]:
    """Names of every installed backend type."""
    return sorted(set(_BUILT_IN) | {ep.name for ep in entry_points(group=_GROUP)})


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
    try:
        target = _BUILT_IN.get(type_name)
        if target is not None:
            module, _, name = target.partition(":")
            factory: type[BackendFactory] = getattr(importlib.import_module(module), name)
            return factory
        matches = [ep for ep in entry_points(group=_GROUP) if ep.name == type_name]
        if not matches:
            known = ", ".join(available_types()) or "none"
            raise ConfigError(f"type: unknown backend type {type_name!r} (installed: {known})")
        factory = matches[0].load()
    except ImportError as exc:
        raise ConfigError(
            f"type: backend {type_name!r} cannot be loaded ({exc}); is its extra installed, "
            f"e.g. pip install 'rotator[{type_name.split('-')[0]}]'?"
        ) from exc
    return factory


def entry_points(**selection: Any) -> Any:
    """importlib.metadata's, imported at the first plugin lookup (not at start-up)."""
    from importlib.metadata import entry_points as installed

    return installed(**selection)


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
