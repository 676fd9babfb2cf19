"""`state prune` deletes a batch of runs with one journal sync, and a kill mid-prune (or a
power loss after it) leaves a store the next prune finishes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import rotator.state.file as checkpoint
from rotator.config.keep import Keep
from rotator.ops.retention import prune_store
from rotator.state.file import FileStore

NOW = datetime(2030, 6, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)
OLD = 40  # runs old enough to go
KEEP = Keep(age=timedelta(days=90))


def run_doc(run_id: str, days_ago: int) -> dict[str, object]:
    at = (NOW - timedelta(days=days_ago)).isoformat()
    return {"run_id": run_id, "account": "svc_a", "state": "completed",
            "token_name": f"rotator-svc_a-{run_id}", "started_at": at, "updated_at": at,
            "version": 1}  # fmt: skip


def seed(root: Path) -> None:
    """svc_a: OLD completed runs 200+ days old and a last run of 5 days ago, all indexed."""
    fs = FileStore(root, clock=lambda: NOW)
    lease = fs.acquire_lease("svc_a", owner="test", ttl=TTL)
    ids = [f"old{n:03d}" for n in range(OLD)] + ["last"]
    for n, run_id in enumerate(ids):
        lease = fs.save(lease, run=run_doc(run_id, 5 if run_id == "last" else 300 - n))
    fs.save(lease, account={"account": "svc_a", "runs": ids, "last_run_id": "last",
                            "version": 1})  # fmt: skip
    fs.release_lease(lease)


def on_disk(root: Path) -> set[str]:
    return {p.stem for p in (root / "runs").glob("*.json")}


def test_a_prune_syncs_once_per_account_not_per_run(tmp_path: Path, syncs: list[str]) -> None:
    seed(tmp_path)
    fs = FileStore(tmp_path, clock=lambda: NOW)
    syncs.clear()
    report = prune_store(fs, keep=KEEP, now=NOW, owner="t", lease_ttl=TTL)
    assert len(report.removed) == OLD
    assert on_disk(tmp_path) == {"last"}
    # The batch's sync and the lease release's barrier: not one per deleted run.
    assert 1 <= len([p for p in syncs if "/journal/" in p]) <= 2


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from rotator.config.keep import Keep
    from rotator.ops.retention import prune_store
    from rotator.state.file import FileStore

    root, after = Path(sys.argv[1]), int(sys.argv[2])
    real, seen = os.unlink, [0]

    def unlink(path, *args, **kwargs):
        if "/runs/" in str(path) and str(path).endswith(".json"):
            if seen[0] == after:
                os.kill(os.getpid(), signal.SIGKILL)
            seen[0] += 1
        return real(path, *args, **kwargs)

    os.unlink = unlink
    now = datetime(2030, 6, 1, tzinfo=UTC)
    prune_store(FileStore(root, clock=lambda: now), keep=Keep(age=timedelta(days=90)),
                now=now, owner="t", lease_ttl=timedelta(minutes=15))
    """
)


@pytest.mark.parametrize("after", [0, 7, OLD - 1])
@pytest.mark.parametrize("reboot", [False, True])
def test_a_kill_mid_prune_leaves_a_store_the_next_prune_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int, reboot: bool
) -> None:
    """SIGKILL at the `after`-th run deletion (the index already trimmed): the account
    record is whole, every run it indexes is there, nothing kept was lost; with a reboot
    (the journal replayed) the batch's tombstones keep the deleted runs deleted. Either
    way the next prune removes what is left and the store ends as one clean prune leaves it.
    """
    seed(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path), str(after)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == -9, done.stderr
    if reboot:
        monkeypatch.setattr(checkpoint, "boot_id", lambda: "0d2f7c1e-bbbb-4c3e-9d55-2f0a8e1b7c02")
    fs = FileStore(tmp_path, clock=lambda: NOW)
    record = fs.load_account("svc_a")
    assert record is not None and record["runs"] == ["last"]
    assert fs.load_run("last") is not None
    left = on_disk(tmp_path)
    assert "last" in left and len(left) == (1 if reboot else OLD - after + 1)
    fs.read_lease("svc_a")  # readable; the killed prune's lease is free (its pid is dead)
    prune_store(fs, keep=KEEP, now=NOW, owner="t", lease_ttl=TTL)
    assert on_disk(tmp_path) == {"last"}
    assert fs.load_account("svc_a")["runs"] == ["last"]  # type: ignore[index]
