"""The environment variables that tune how a run works, read in one place.

- `ROTATOR_BIND_CPUS` (`bind_cpus()`): whether a fleet pass binds its processes to CPUs
  (rotator.ops.fleet_sizing). On unless `0`, `false`, `no` or `off`.
- `ROTATOR_PROGRESS_INTERVAL` (`progress_interval()`): seconds between a fleet pass's
  `fleet.progress` log events (rotator.ops.progress). A positive number of seconds
  (`2`, `0.5`) or a duration (`30s`, `1m`); 5 when unset.
- `ROTATOR_LOG_LEVEL` (`log_level()`): the Lambda handler's log level (the command line
  has `--log-level`). `debug`, `info`, `warning` or `error`; `info` when unset.

A value that is set but not understood is a ConfigError naming the variable (exit 2 on
the command line, checked by `rotate` before anything is read or written), never a silent
fallback: `ROTATOR_BIND_CPUS=off` that quietly meant "on" would be the surprise. An empty
value counts as unset, as a shell's `VAR=` usually means. `ROTATOR_CONFIG` and
`ROTATOR_NOW` are read where they are used (rotator.config.load, rotator.assembly).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from rotator.durations import parse_duration
from rotator.errors import ConfigError

__all__ = [
    "DEFAULT_PROGRESS_INTERVAL",
    "LOG_LEVELS",
    "bind_cpus",
    "check_fleet",
    "log_level",
    "progress_interval",
]

DEFAULT_PROGRESS_INTERVAL = 5.0

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})
LOG_LEVELS = ("debug", "info", "warning", "error")
"""The levels rotator logs at: the command line's `--log-level` choices and the Lambda's."""


def _get(name: str, environ: Mapping[str, str] | None) -> str:
    return (os.environ if environ is None else environ).get(name, "").strip()


def bind_cpus(environ: Mapping[str, str] | None = None) -> bool:
    """`ROTATOR_BIND_CPUS`: False for 0/false/no/off, True when unset or 1/true/yes/on."""
    raw = _get("ROTATOR_BIND_CPUS", environ)
    if not raw or raw.lower() in _ON:
        return True
    if raw.lower() in _OFF:
        return False
    raise ConfigError(
        f"ROTATOR_BIND_CPUS: {raw!r} is not understood; use 0 (or false, no, off) to turn "
        "CPU binding off, 1 (or true, yes, on) to keep it"
    )


def progress_interval(environ: Mapping[str, str] | None = None) -> float:
    """`ROTATOR_PROGRESS_INTERVAL` in seconds: a positive number, or a duration like 30s."""
    raw = _get("ROTATOR_PROGRESS_INTERVAL", environ)
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = parse_duration(raw).total_seconds()
        except ValueError:
            seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 86400:
        raise ConfigError(
            f"ROTATOR_PROGRESS_INTERVAL: {raw!r} is not a number of seconds between 0 and "
            "86400 (e.g. 5, 0.5 or 30s)"
        )
    return seconds


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """`ROTATOR_LOG_LEVEL` (the Lambda's): one of debug, info, warning, error."""
    raw = _get("ROTATOR_LOG_LEVEL", environ)
    if not raw:
        return "info"
    if raw.lower() not in LOG_LEVELS:
        raise ConfigError(
            f"ROTATOR_LOG_LEVEL: {raw!r} is not a log level; use {', '.join(LOG_LEVELS)}"
        )
    return raw.lower()


def check_fleet(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError for a fleet setting (`rotate`'s) that is set but not understood."""
    bind_cpus(environ)
    progress_interval(environ)
