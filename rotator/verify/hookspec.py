"""What a `hooks` table resolves to: one HookSpec per point, Hooks for all four.

Plain frozen dataclasses, so the engine (which runs hooks) and a config loaded without
pydantic (rotator/config/fast.py) need no pydantic; the TOML `hooks` table itself is
validated by the pydantic models of the same names in rotator/config/schema.py, which
then become these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

__all__ = ["HookPoint", "HookSpec", "Hooks"]

HookPoint = Literal["after_store", "after_promote", "after_revoke", "on_failure"]


@dataclass(frozen=True, slots=True)
class HookSpec:
    command: tuple[str, ...]
    timeout: timedelta = timedelta(seconds=60)
    on_error: Literal["rollback", "warn"] = "rollback"
    pass_token: bool = False
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hooks:
    after_store: HookSpec | None = None
    after_promote: HookSpec | None = None
    after_revoke: HookSpec | None = None
    on_failure: HookSpec | None = None
