"""Where rotator may talk without TLS: loopback only, unless a config says `insecure = true`.

The admin token (to MotherDuck) and the backend credentials (to Vault) travel in headers;
plain http, or https without certificate checks, hands them to anyone on the path. So a
config that asks for either toward any host but loopback is refused at load time unless
the table also says `insecure = true`, and a run that uses such a URL logs a warning each
time (`motherduck.insecure_url`, `vault.insecure_url`, `aws.insecure_url`,
`state.insecure_url`, `check.insecure_url`).

The URLs themselves (`http_url`, `http_base_url`, `aws_endpoint_url`): an http(s) URL with
a host, and never credentials, spaces or a bad port; a base URL (api_url, Vault's url, an
AWS endpoint) also no query, fragment or dot segments, which two clients would read two
ways. Messages never echo the URL.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = [
    "AWS_REGION_RE",
    "HTTP_URL_RE",
    "aws_endpoint_url",
    "check_aws_region",
    "http_base_url",
    "http_url",
    "insecure_reason",
    "is_loopback",
]

AWS_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}")
"""An AWS region name (eu-west-1, us-gov-west-1, us-isob-east-1): endpoints are built from it."""
HTTP_URL_RE = re.compile(r"^https?://[^/\s]+")


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


def http_url(value: str, *, example: str) -> str:
    """An http(s) URL with a host and nothing a client would read two ways or show: no
    credentials, spaces, control characters or bad port. The message never echoes it."""
    if not HTTP_URL_RE.match(value):
        raise ValueError(f"must be an http(s) URL such as {example}")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"must name a host, such as {example}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold a user name or password")
    return value


def http_base_url(value: str, *, example: str) -> str:
    """An http(s) base URL (`http_url`): host, optional port and path prefix, nothing else;
    returned without trailing slashes.

    A query, a fragment or a `.`/`..` path segment are refused too: for `api_url`, the
    command line's client (httpx) and the Lambda's (urllib3) would each make a different
    request of them. A password in any URL would be a second credential in the config,
    shown wherever the URL is (status, logs, errors).
    """
    http_url(value, example=example)
    if "?" in value or "#" in value:
        raise ValueError("must not have a query (?...) or a fragment (#...)")
    if any(segment in (".", "..") for segment in urlsplit(value).path.split("/")):
        raise ValueError("must not have '.' or '..' path segments")
    return value.rstrip("/")


def aws_endpoint_url(value: str, *, insecure: bool) -> str:
    """An AWS `endpoint_url` (a base URL, `http_base_url`; kept as written, botocore takes
    either form); plain http to a host other than loopback only with `insecure`: the
    request bodies (the token a backend writes, the state store's key item) would travel
    in clear."""
    http_base_url(value, example="https://secretsmanager.eu-west-1.amazonaws.com")
    why = insecure_reason(value)
    if why and not insecure:
        raise ValueError(
            f"{why} would send the secret values in clear; use https, or set insecure = true"
        )
    return value
