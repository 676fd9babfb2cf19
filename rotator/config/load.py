"""Reading a config: the file, the TOML, every table, `[defaults]` merged into each account.

Two loaders give the same frozen Config (rotator/config/resolved.py). The common, valid
file is checked without pydantic (rotator/config/fast.py, ~1 ms); anything that loader is
not sure of goes to the reference loader (rotator/config/slow.py: the pydantic models of
rotator/config/schema.py), which reports every problem it finds, not just the first.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from rotator.config import fast
from rotator.config.resolved import Config
from rotator.config.rules import MIN_TOKEN_LIFE
from rotator.errors import ConfigError

__all__ = ["MIN_TOKEN_LIFE", "default_config_path", "load_config", "parse_config"]


def default_config_path(explicit: str | None = None) -> Path:
    """`--config`, else `$ROTATOR_CONFIG`, else `./rotator.toml`."""
    return Path(explicit or os.environ.get("ROTATOR_CONFIG") or "rotator.toml")


def load_config(path: Path) -> Config:
    """Read and validate a TOML config file. Raises ConfigError naming the field at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found (use --config or $ROTATOR_CONFIG)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    return parse_config(text, base_dir=path.resolve().parent, source=str(path))


def parse_config(text: str, *, base_dir: Path, source: str = "<config>") -> Config:
    """Validate TOML text. Raises ConfigError with every problem, the first in the message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    config = fast.parse_tables(data, base_dir=base_dir, source=source)
    if config is not None:
        return config
    from rotator.config import slow

    return slow.parse_tables(data, base_dir=base_dir, source=source)
