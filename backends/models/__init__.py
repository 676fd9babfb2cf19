"""The pydantic models of backend tables that must not load with their backend.

`BackendConfig` (every backend `Config` subclasses it; plugins import it as
`backends.base.BackendConfig`) and the built-in `file` backend's `FileConfig` live here,
not in backends/base.py and backends/file.py, so that importing the backends package (the
engine does, for every run) or the file backend imports no pydantic (~65 ms): a config
the pydantic-free loader accepted (rotator/config/fast.py) builds these models only when
a backend is built. backends/base.py and backends/file.py hand them out on first use;
the `aws-secrets-manager` and `vault` models are in backends/models/aws.py and vault.py
for the same reason.

This module imports nothing from backends/base.py (which imports it on demand), so
`format` spells out `ValueFormat`'s values (tests/unit/test_config_fastpath.py checks they
agree).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["BackendConfig", "FileConfig"]


class BackendConfig(BaseModel):
    """Fields every backend accepts; a backend's `Config` subclasses this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    format: Literal["json", "raw"] = "json"


class FileConfig(BackendConfig):
    """`[[accounts.backends]]` with `type = "file"`."""

    path: str
    # A symlink at `path` is refused unless this is true; then the file it points to is
    # rotated (its directory gets the .pending/.rotator-backup/.rotator.json files).
    follow_symlinks: bool = False

    @field_validator("path")
    @classmethod
    def _a_path(cls, value: str) -> str:
        # An empty path is the config's own directory; a NUL no system call accepts.
        if not value or not value.isprintable():
            raise ValueError("must be a file path: not empty, no control characters")
        return value
