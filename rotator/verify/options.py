"""A built-in check's options as the config gives them, read into typed values.

`Options(check, table)` takes a `checks = [...]` table without its own keys (`type`,
`attempts`, `interval`); each read returns the value or raises ConfigError naming the
check and the option (`http check: expect_status: ...`), which the config loader prefixes
with where it is (`defaults.checks[2]: ...`). `done()` refuses an option nobody read. So
a mistake fails `rotator config validate` with exit 2, not the first rotation (a
`expect_status = "200"` that no answer equals would roll back every run).

The TLS rule of rotator.netpolicy holds for checks too: they send the *new* token. A URL
with plain http to a host other than loopback, or a Postgres `sslmode` without certificate
checks, needs `insecure = true` in the check's table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from rotator.durations import parse_duration
from rotator.errors import ConfigError
from rotator.netpolicy import http_url, insecure_reason

__all__ = ["MAX_CHECK_TIMEOUT", "Options"]

MAX_CHECK_TIMEOUT = 3600.0
"""Seconds: far beyond any check. The lease bounds it further: an attempt must be shorter
than half of lease_ttl (rotator.config.rules.check_step_timeouts)."""

_REQUIRED: Any = object()


class Options:
    """Typed reads of one check's options; see the module docstring."""

    def __init__(self, check: str, table: Mapping[str, Any]) -> None:
        self.check = check
        self._left = dict(table)
        self._known: list[str] = []

    def error(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"{self.check} check: {name}: {why}")

    def _take(self, name: str, default: Any) -> Any:
        self._known.append(name)
        if name in self._left:
            return self._left.pop(name)
        if default is _REQUIRED:
            raise ConfigError(f"{self.check} check: {name} is required")
        return default

    def peek(self, name: str) -> Any:
        """The option as given (None when absent), without reading it."""
        return self._left.get(name)

    def text(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self._take(name, default)
        if value is not default and (not isinstance(value, str) or not value):
            raise self.error(name, "must be a non-empty string")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._take(name, default)
        if not isinstance(value, bool):
            raise self.error(name, "must be true or false")
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        value = self._take(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(name, f"must be a whole number from {low} to {high}")
        return value

    def seconds(self, name: str, default: float) -> float:
        """A number of seconds (`10`, `2.5`) or a duration (`"30s"`, `"5m"`)."""
        value = self._take(name, default)
        if isinstance(value, str):
            try:
                value = parse_duration(value)
            except ValueError as exc:
                raise self.error(name, str(exc)) from None
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, 'must be a number of seconds or a duration such as "30s"')
        seconds = float(value)
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_CHECK_TIMEOUT:
            raise self.error(name, f"must be above 0 and at most {MAX_CHECK_TIMEOUT:.0f}s")
        return seconds

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        """One of `choices`, matched without regard to case."""
        value = self._take(name, default)
        found = isinstance(value, str) and next(
            (c for c in choices if c.lower() == value.lower()), None
        )
        if not found:
            raise self.error(name, f"must be one of {', '.join(choices)}")
        return found

    def strings(self, name: str) -> list[str]:
        value = self._take(name, _REQUIRED)
        if not isinstance(value, list) or not value:
            raise self.error(name, "must be a non-empty list of strings")
        if not all(isinstance(item, str) and item for item in value):
            raise self.error(name, "must hold non-empty strings only")
        return list(value)

    def string_table(self, name: str) -> dict[str, str]:
        value = self._take(name, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error(name, 'must be a table of strings, such as { REGION = "eu" }')
        return dict(value)

    def url(self, name: str, default: Any = _REQUIRED, *, example: str) -> Any:
        """An http(s) URL; plain http to a host other than loopback only with `insecure`."""
        insecure = self.flag("insecure", False)
        value = self._take(name, default)
        if value is default:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"must be an http(s) URL such as {example}")
        try:
            http_url(value, example=example)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None
        why = insecure_reason(value)
        if why and not insecure:
            raise self.error(
                name,
                f"{why} would send the new token in clear; use https, or set insecure = true",
            )
        return value

    def done(self) -> None:
        """Refuse the options no read asked for (a typo, or one of another check type)."""
        if self._left:
            known = ", ".join(sorted(set(self._known)))
            raise ConfigError(
                f"{self.check} check: unknown option(s) {', '.join(sorted(self._left))}"
                + (f" (it takes {known})" if known else " (it takes none)")
            )
