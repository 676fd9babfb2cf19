"""The Lambda's MotherDuck client: GETs over urllib3, everything else over httpx.

A scheduled pass with nothing due only reads (the admin-token probe, each account's token
listing for its metrics). Those go through `rotator.motherduck.reads.ReadClient` over
urllib3, which botocore has loaded already; httpx (~25 ms of a cold start) and the full
`MotherDuckClient` are imported and built only when a call needs them: a due account's
rotation (create, revoke), or a probe that reports when it was sent. Both follow the same
rules (status mapping, retries, deadlines, size cap, secret-free errors); see reads.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rotator.motherduck.parse import TokenInfo
from rotator.motherduck.reads import ReadClient

if TYPE_CHECKING:
    from rotator.config import Config
    from rotator.motherduck.client import MotherDuckClient
    from rotator.secret import Secret

__all__ = ["LambdaClient", "lambda_client"]


def lambda_client(config: Config, admin_token: Secret) -> MotherDuckClient:
    """The engine's client: a LambdaClient in MotherDuckClient's place (the same calls)."""
    from typing import cast

    timeout = config.motherduck.timeout.total_seconds()
    client = LambdaClient(config.motherduck.api_url, admin_token, timeout=timeout)
    # It answers every call the engine makes of a MotherDuckClient: reads itself, the rest
    # by the MotherDuckClient it builds (see __getattr__).
    return cast("MotherDuckClient", client)


class LambdaClient:
    """Reads by a ReadClient; any other call by a MotherDuckClient made at its first use."""

    def __init__(self, api_url: str, admin_token: Secret, *, timeout: float) -> None:
        self._api_url = api_url
        self._admin_token = admin_token
        self._timeout = timeout
        self.reads = ReadClient(api_url, admin_token, timeout=timeout)
        self._full: MotherDuckClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LambdaClient({self.reads!r})"

    def list_tokens(self, username: str) -> list[TokenInfo]:
        return self.reads.list_tokens(username)

    def find_tokens_by_name(self, username: str, name: str) -> list[TokenInfo]:
        return self.reads.find_tokens_by_name(username, name)

    def active_accounts(
        self, *, on_sent: Callable[[], None] | None = None
    ) -> list[dict[str, Any]]:
        if on_sent is not None:  # only httpx's trace tells when a request went out
            return self.full().active_accounts(on_sent=on_sent)
        return self.reads.active_accounts()

    def full(self) -> MotherDuckClient:
        """The httpx client, for everything but reads (imported and built once)."""
        with self._lock:
            if self._full is None:
                from rotator.util.startup import import_httpx

                import_httpx()
                from rotator.motherduck.client import MotherDuckClient

                # The ReadClient said `motherduck.insecure_url` already: once per run.
                self._full = MotherDuckClient(
                    self._api_url, self._admin_token, timeout=self._timeout,
                    warn_insecure=False,
                )
            return self._full

    def close(self) -> None:
        self.reads.close()
        with self._lock:
            full, self._full = self._full, None
        if full is not None:
            full.close()

    def __enter__(self) -> LambdaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # create_token, revoke_token, the account and Duckling calls: MotherDuckClient's.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full(), name)
