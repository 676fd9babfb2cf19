"""Seams between the merged branches that only an in-memory world can pin to an instant.

Companion of tests/integration/test_merged_seams.py: the same kind of bug (two features
that each worked alone), where the instant that matters (a stall between a check and an
effect) has no stall point a real process could be stopped at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backends.base import StoredToken
from rotator.config import parse_config
from rotator.engine import revoke as revoke_module
from rotator.engine.workflow import Engine
from rotator.errors import LeaseHeld
from rotator.secret import Secret
from rotator.state.file import FileStore
from tests.unit.fakes import FakeMotherDuck, MemoryBackend

USER = "svc_a"
CONFIG = f"""
[[accounts]]
username = "{USER}"
  [[accounts.backends]]
  type = "file"
  path = "unused.json"
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class TestRevokeCommandUnderFencing:
    def test_revoke_taken_over_between_its_checks_and_the_delete_revokes_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`rotator revoke` stalls after deciding the token is unused; another run takes the
        account over (its lease expired). The stale command must not send the DELETE: the
        token may be in use by then (adopted, served). Every other effect is fenced so.
        """
        md = FakeMotherDuck()
        current = md.seed(USER)
        orphan = md.seed(USER, name="left-over")
        backend = MemoryBackend(
            "b0", current=StoredToken(Secret(current.secret), current.info.id, "initial")
        )
        clock = Clock()
        store = FileStore(tmp_path / "state", clock=clock, durable=False)
        engine = Engine(
            parse_config(CONFIG, base_dir=tmp_path),
            md,  # type: ignore[arg-type]
            store,
            clock=clock,
            backends_for=lambda a: [backend],  # type: ignore[arg-type,return-value]
            owner="person-1",
        )
        engine.adopt(USER, current.info.id)
        real_references = revoke_module.references

        def stall_then_lose_the_lease(ctx: Any, token_id: str) -> list[str]:
            found = real_references(ctx, token_id)
            clock.now += timedelta(hours=2)  # the stall outlasts the lease
            store.acquire_lease(USER, owner="person-2", ttl=timedelta(minutes=15))
            return found

        monkeypatch.setattr(revoke_module, "references", stall_then_lose_the_lease)
        with pytest.raises(LeaseHeld):
            engine.revoke(USER, orphan.info.id)
        assert md.live_ids(USER) == {current.info.id, orphan.info.id}
        assert ("revoke", orphan.info.id) not in md.calls


class TestRedactionOfWrappedTables:
    def test_a_secret_in_a_long_cell_does_not_reach_stdout_in_pieces(self) -> None:
        """The 80-column tables wrap long cells; stdout's RedactingStream redacts per line.

        A known secret (a Slack webhook URL, a Vault token) in a message cell was cut onto
        two lines first, and each piece passed the redactor: 60 characters of it on stdout.
        """
        import io

        from rotator import log as rlog
        from rotator.secret import register
        from rotator.tables import plain_table

        vault_token = "hvs.CAESIJ" + "q7" * 40
        webhook = "https://hooks.slack.com/services/T0QA/B0QA/" + "Zk3" * 20
        register(vault_token)
        register(webhook)
        buf = io.StringIO()
        out = rlog.RedactingStream(buf)
        message = f"vault said: token {vault_token} refused; then posting to {webhook} failed"
        plain_table(out, ["ACCOUNT", "RESULT", "MESSAGE"], [["svc_a", "error", message]],
                    notes=[f"failure: {message}"])
        text = buf.getvalue()
        assert all(len(line) <= 80 for line in text.splitlines()), text
        for secret in (vault_token, webhook):
            pieces = {secret[i : i + 24] for i in range(len(secret) - 23)}
            assert not [p for p in pieces if p in text.replace("\n", "")], text
        assert "***" in text
