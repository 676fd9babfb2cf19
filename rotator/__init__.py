"""rotator: safe, resumable rotation of MotherDuck service-account tokens."""

from __future__ import annotations

from rotator.errors import (
    BackendConflict,
    BackendError,
    CheckFailed,
    ConfigError,
    LeaseHeld,
    MotherDuckError,
    NeedsAttention,
    OutcomeUnknown,
    RotatorError,
)
from rotator.secret import Secret

__version__ = "0.1.0"

__all__ = [
    "BackendConflict",
    "BackendError",
    "CheckFailed",
    "ConfigError",
    "LeaseHeld",
    "MotherDuckError",
    "NeedsAttention",
    "OutcomeUnknown",
    "RotatorError",
    "Secret",
    "__version__",
]
