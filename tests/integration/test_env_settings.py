"""The environment variables that tune `rotate` (rotator.envsettings), as a user sets them.

A value rotator does not understand stops the command before anything is read or written:
exit 2, one line naming the variable, no token minted, no run recorded, the secret files
as they were. One account or a fleet, one process or several, the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.rotator_cli import CliSetup, adopted_fleet, json_lines, read_secret


def snapshot(sim: Any, cli: CliSetup, users: list[str]) -> dict[str, Any]:
    return {
        user: (sim.live_token_ids(user), read_secret(cli.secret_file(user))) for user in users
    }


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROTATOR_BIND_CPUS", "maybe"),
        ("ROTATOR_BIND_CPUS", "2"),
        ("ROTATOR_PROGRESS_INTERVAL", "soon"),
        ("ROTATOR_PROGRESS_INTERVAL", "0"),
    ],
)
@pytest.mark.parametrize("how", [("--all", "--processes", "2"), ("--all", "--processes", "1"),
                                 ("one",)])
def test_a_setting_not_understood_stops_rotate_before_anything(
    simulator: Any, tmp_path: Path, variable: str, value: str, how: tuple[str, ...]
) -> None:
    cli, users = adopted_fleet(simulator, tmp_path, 2)
    before = snapshot(simulator, cli, users)
    asked = len(simulator.requests())
    args = (users[0],) if how == ("one",) else how
    done = cli.run("rotate", *args, "--force", env=cli.env(**{variable: value}))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"rotator: error: {variable}: {value!r} "), line
    assert done.stdout == ""
    assert simulator.requests()[asked:] == []  # not even the admin-token probe
    assert snapshot(simulator, cli, users) == before
    assert cli.runs() == []


def test_settings_it_understands_run_the_pass(simulator: Any, tmp_path: Path) -> None:
    """`off` for the binding and `30s` for the progress: the pass runs as usual."""
    cli, users = adopted_fleet(simulator, tmp_path, 2)
    env = cli.env(ROTATOR_BIND_CPUS="off", ROTATOR_PROGRESS_INTERVAL="30s")
    done = cli.run("rotate", "--all", "--force", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert [d["result"] for d in json_lines(done.stdout)] == ["completed", "completed"]
    for user in users:
        held = read_secret(cli.secret_file(user))["token_id"]
        assert simulator.live_token_ids(user) == {held}
