"""Where rotator may talk without TLS: loopback only, unless a config says `insecure = true`.

The admin token (to MotherDuck) and the backend credentials (to Vault) travel in headers;
plain http, or https without certificate checks, hands them to anyone on the path. So a
config that asks for either toward any host but loopback is refused at load time unless
the table also says `insecure = true`, and a run that uses such a URL logs a warning each
time (`motherduck.insecure_url`, `vault.insecure_url`).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["AWS_REGION_RE", "check_aws_region", "insecure_reason", "is_loopback"]

AWS_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}")
"""An AWS region name (eu-west-1, us-gov-west-1, us-isob-east-1): endpoints are built from it."""


def check_aws_region(value: str | None) -> str | None:
    """A pydantic validator: `value` unchanged if it is a region name, else ValueError."""
    if value is not None and not AWS_REGION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an AWS region name such as eu-west-1")
    return value


def is_loopback(host: str) -> bool:
    """True for localhost names and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_reason(url: str, *, verify: bool = True) -> str | None:
    """Why `url` is not protected by TLS (None when it is, or when it points at loopback)."""
    parts = urlsplit(url)
    if is_loopback(parts.hostname or ""):
        return None
    if parts.scheme == "http":
        return "plain http to a non-loopback host"
    if not verify:
        return "verify = false (no certificate check) to a non-loopback host"
    return None
