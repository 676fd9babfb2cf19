"""The failure the Lambda handler raises for a rotation step or a scheduled pass.

Its own module so that every part of the handler (the Secrets Manager steps, the
scheduled pass, the package's start-up) can raise it without importing each other.
"""

from __future__ import annotations

from rotator.errors import RotatorError

__all__ = ["RotationError"]


class RotationError(RotatorError):
    """A rotation step failed; Lambda reports it to Secrets Manager as a failed step."""
