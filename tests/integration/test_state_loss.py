"""A lost or different state store, disagreeing backends and `adopt`: never mint over a
live token nothing tracks, never adopt a token the backends do not serve.

Real `rotator` processes against the simulator, OpenBao and moto (file + Vault + AWS).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.support.harness import Rig, make_rig, sim_mutations


def _rig(simulator: Any, openbao_server: Any, aws: Any, kv_path: str, root: Path) -> Rig:
    return make_rig(simulator, root, bao=openbao_server, kv_path=kv_path, aws=aws)


def _refused_with_adopt(rig: Rig, done: Any, token_id: str) -> None:
    assert done.code == 2, done.stderr
    assert f"rotator adopt {rig.user} --token-id {token_id}" in done.stderr
    assert "Traceback" not in done.stderr


def test_state_dir_moved_aside_refuses_then_adopt_resumes(
    simulator: Any, openbao_server: Any, aws: Any, kv_path: str, tmp_path: Path
) -> None:
    """state/ gone: rotate exits 2 naming `rotator adopt ...`; nothing minted or written."""
    rig = _rig(simulator, openbao_server, aws, kv_path, tmp_path)
    shutil.move(rig.cli.state_dir, tmp_path / "state.aside")
    before = rig.snapshot()
    simulator.clear_requests()
    done = rig.run("rotate", rig.user, "--json")
    _refused_with_adopt(rig, done, rig.old_id)
    assert sim_mutations(simulator) == []
    assert rig.snapshot()["backends"] == before["backends"]
    assert simulator.live_token_ids(rig.user) == {rig.old_id}
    # The command it names works, and the next rotation revokes the adopted token.
    assert rig.run("adopt", rig.user, "--token-id", rig.old_id).code == 0
    done = rig.run("rotate", rig.user, "--force", "--json")
    assert done.code == 0, done.stderr
    assert rig.end_violations(expect_revoked=[rig.old_id]) == []


def test_config_copied_to_another_dir_refuses(
    simulator: Any, openbao_server: Any, aws: Any, kv_path: str, tmp_path: Path
) -> None:
    """A copy of the config elsewhere: empty relative state, same Vault and AWS secrets."""
    rig = _rig(simulator, openbao_server, aws, kv_path, tmp_path / "a")
    other = tmp_path / "b"
    other.mkdir()
    shutil.copy(rig.cli.config_path, other / "rotator.toml")
    env = rig.env(ROTATOR_CONFIG=str(other / "rotator.toml"))
    simulator.clear_requests()
    done = rig.cli.run("rotate", rig.user, "--force", "--json", env=env)
    assert done.returncode == 2, done.stderr
    assert f"rotator adopt {rig.user} --token-id {rig.old_id}" in done.stderr
    assert sim_mutations(simulator) == []
    assert rig.i1_violations() == []
    assert simulator.live_token_ids(rig.user) == {rig.old_id}


def test_force_while_backends_disagree_refuses(
    simulator: Any, openbao_server: Any, aws: Any, kv_path: str, tmp_path: Path
) -> None:
    """Vault serves another live token than the record: --force must not orphan either."""
    rig = _rig(simulator, openbao_server, aws, kv_path, tmp_path)
    other_secret, other_id = simulator.seed(rig.user, token_name="by-hand")
    openbao_server.root_client().secrets.kv.v2.create_or_update_secret(
        rig.kv_path, {"motherduck_token": other_secret, "token_id": other_id}
    )
    simulator.clear_requests()
    done = rig.run("rotate", rig.user, "--force", "--json")
    _refused_with_adopt(rig, done, other_id)
    assert "vault:" in done.stderr
    assert sim_mutations(simulator) == []
    assert simulator.live_token_ids(rig.user) == {rig.old_id, other_id}


def test_adopt_refuses_a_token_the_backends_do_not_serve(
    simulator: Any, openbao_server: Any, aws: Any, kv_path: str, tmp_path: Path
) -> None:
    """adopt of a live but unserved token: exit 2, record unchanged; --force adopts, loudly."""
    rig = _rig(simulator, openbao_server, aws, kv_path, tmp_path)
    _, spare_id = simulator.seed(rig.user, token_name="spare")
    done = rig.run("adopt", rig.user, "--token-id", spare_id, "--json")
    assert done.code == 2, done.stderr
    assert rig.old_id in done.stderr and "--force" in done.stderr
    assert (rig.account_doc() or {})["current_token"]["id"] == rig.old_id
    forced = rig.run("adopt", rig.user, "--token-id", spare_id, "--force", "--json")
    assert forced.code == 0, forced.stderr
    [result] = forced.results
    assert "FORCED" in result["message"]
    assert "token.adopted_forced" in forced.stderr
    assert (rig.account_doc() or {})["current_token"]["id"] == spare_id
    json.dumps(result)  # a plain JSON line
