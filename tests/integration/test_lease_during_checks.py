"""A slow check keeps the run's lease: a second `rotate` meanwhile is refused, not let in.

A check's attempts may run back to back (`interval = "0s"`) for longer than `lease_ttl`.
Before each attempt of a check that sends the token out, the run checks its lease and,
with under half of it left, renews it (`RunContext._fence`), so the lease does not lapse
while the run is alive and verifying: a second process then finds it held (exit 3) and
changes nothing. The config refuses a check or hook timeout of half the lease or more
(tests/unit/test_config_rules.py).

To keep the test short, the second process looks 20 s ahead (`ROTATOR_NOW`): the 30 s
lease the first run took looks lapsed to it unless the first run renewed it since, which
it does before its third attempt, 16 s in, when under half of it was left.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.procs import wait_until
from tests.support.rotator_cli import CliSetup, read_secret, seed_file
from tests.support.simulator_fixtures import unique_username

# Attempts 1 and 2 take 8 s each and fail; attempt 3 waits for the test's go-ahead.
SLOW_CHECK = """
import pathlib, sys, time
marks, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
marks.mkdir(exist_ok=True)
n = len(list(marks.iterdir())) + 1
(marks / str(n)).touch()
if n < 3:
    time.sleep(8)
    sys.exit(1)
end = time.monotonic() + 9
while not go.exists() and time.monotonic() < end:
    time.sleep(0.02)
sys.exit(0 if go.exists() else 1)
"""


def test_a_second_run_is_refused_while_a_slow_check_retries(
    simulator: Any, tmp_path: Path
) -> None:
    marks, go = tmp_path / "marks", tmp_path / "go"
    command = json.dumps([sys.executable, "-c", SLOW_CHECK, str(marks), str(go)])
    user = unique_username()
    old_secret, old_id = simulator.seed(user)
    policy = (
        'lease_ttl = "30s"\nrevoke_grace = "0s"\n'
        f'checks = ["readback", {{type = "command", command = {command}, timeout = 10, '
        'attempts = 3, interval = "0s"}]'
    )
    cli = CliSetup(
        tmp_path, simulator.url, simulator.admin_token, [user], policy=policy,
        create_settle="0s",
    ).write()
    # A short MotherDuck timeout lets lease_ttl be its floor, 30 s.
    text = cli.config_path.read_text().replace("[state]", 'timeout = "1s"\n\n[state]', 1)
    cli.config_path.write_text(text)
    seed_file(cli.secret_file(user), old_secret, old_id)
    assert cli.run("adopt", user, "--token-id", old_id).returncode == 0

    first = cli.start("rotate", user, "--force")
    try:
        wait_until(lambda: (marks / "3").exists() or first.poll() is not None,
                   timeout=60, what="the check's third attempt")
        assert first.poll() is None, first.communicate()
        ahead = (datetime.now(UTC) + timedelta(seconds=20)).isoformat()
        second = cli.run("rotate", user, "--force", env=cli.env(ROTATOR_NOW=ahead))
        go.touch()
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert second.returncode == 3, (second.stdout, second.stderr)
    assert "is being rotated by" in second.stderr
    assert first.returncode == 0, (out, err)
    held = read_secret(cli.secret_file(user))["token_id"]
    assert held != old_id
    assert simulator.live_token_ids(user) == {held}  # one rotation, the old token revoked
    assert len(cli.runs()) == 1
