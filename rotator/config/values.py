"""The checks on one value that both loaders run: each returns the value kept, or raises.

pydantic's field validators in rotator/config/schema.py call these, and so does the
pydantic-free loader (rotator/config/fast.py): one definition of each rule and of its
message. A ValueError's text becomes the problem line (`accounts[0].ttl: must be ...`).
"""

from __future__ import annotations

import re
from datetime import timedelta

from backends.base import env_name as env_name
from rotator.netpolicy import HTTP_URL_RE as HTTP_URL_RE
from rotator.netpolicy import aws_endpoint_url as aws_endpoint_url
from rotator.netpolicy import http_base_url, insecure_reason

USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,254}$")
# `checks = [...]` entries: these keys are the check's own, every other one is an option.
CHECK_KEYS = frozenset({"type", "attempts", "interval"})


def api_url(value: str, *, insecure: bool) -> str:
    """MotherDuck's base URL (`http_base_url`), TLS unless to loopback or `insecure`."""
    value = http_base_url(value, example="https://api.motherduck.com")
    why = insecure_reason(value)
    if why and not insecure:
        raise ValueError(
            f"{why} would send the admin token in clear; use https, or set insecure = true"
        )
    return value


_DYNAMODB_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")


def dynamodb_table(value: str) -> str:
    if not _DYNAMODB_TABLE.fullmatch(value):
        raise ValueError(
            "must be a DynamoDB table name: 3 to 255 letters, digits, '_', '.' or '-'"
        )
    return value


def nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def settle_range(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= timedelta(minutes=10):
        raise ValueError("must be between 0s and 10m")
    return value


def keep_runs(value: str | int | None) -> str | int | None:
    if value is not None:
        from rotator.config.keep import parse_keep

        parse_keep(value)
    return value


def window(value: str | None) -> str | None:
    if value is not None:
        from rotator.schedule import parse_window

        parse_window(value)
    return value


def spread_range(value: timedelta) -> timedelta:
    if value > timedelta(days=365):
        raise ValueError("must be at most 365d")
    return value


def ttl_range(value: timedelta | None) -> timedelta | None:
    if value is not None and not 300 <= value.total_seconds() <= 31_536_000:
        raise ValueError("must be between 300s and 365d (MotherDuck's ttl range)")
    return value


def lease_floor(value: timedelta) -> timedelta:
    if value < timedelta(seconds=30):
        raise ValueError("must be at least 30s")
    return value


def username(value: str) -> str:
    if not USERNAME_RE.fullmatch(value):
        raise ValueError(
            "must be 3-255 characters, start with a letter, letters/digits/underscore only"
        )
    return value
