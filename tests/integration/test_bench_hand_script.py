"""benchmarks/hand_script.py --fleet, the baseline issue 16's rows 1-2 compare rotator with.

Run as the benchmark runs it (a child process against the simulator over HTTP); what is
asserted is the outside world: the tokens the simulator holds, the token files, and the
requests the simulator logged per rotation (two, or rotator's five with --like-rotator).
No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.simulator_fixtures import SimulatorHandle, unique_username

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "hand_script.py"


def _seed_files(sim: SimulatorHandle, directory: Path, count: int) -> dict[str, str]:
    directory.mkdir()
    ids = {}
    for _ in range(count):
        user = unique_username("scr")
        secret, token_id = sim.seed(user, token_name="initial")
        (directory / f"{user}.json").write_text(
            json.dumps({"motherduck_token": secret, "token_id": token_id})
        )
        ids[user] = token_id
    return ids


def _run(sim: SimulatorHandle, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOTHERDUCK_ADMIN_TOKEN": sim.admin_token}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--fleet", str(directory), "--concurrency", "4", *extra,
         sim.url],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize(("extra", "lists"), [((), 0), (("--like-rotator",), 3)])
def test_rotates_every_file_with_its_requests(
    simulator: SimulatorHandle, tmp_path: Path, extra: tuple[str, ...], lists: int
) -> None:
    ids = _seed_files(simulator, tmp_path / "secrets", 3)
    simulator.clear_requests()
    done = _run(simulator, tmp_path / "secrets", *extra)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    routes = Counter(entry["route"] for entry in simulator.requests())
    assert routes == Counter(create_token=3, revoke_token=3, **({"list_tokens": 3 * lists}
                                                                  if lists else {}))
    for user, old_id in ids.items():
        stored = json.loads((tmp_path / "secrets" / f"{user}.json").read_text())
        # The file holds the one live token; the old one is gone from MotherDuck.
        assert simulator.live_token_ids(user) == {stored["token_id"]} != {old_id}
        assert simulator.whoami(stored["motherduck_token"]) == user

