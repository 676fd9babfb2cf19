"""The leak scan: hostile hooks and checks try every way to get a secret out, and none does.

Around one account (file backend, simulator) rotator runs with the admin token, a Vault
token, AppRole ids and AWS keys in its environment, the admin and Vault tokens also in
files next to the config, webhook and Slack notifications to a local listener, metrics and
the audit trail on. Its hooks (after_store with pass_token, after_promote, on_failure) and
a `command` check run a hostile script that records its environment, prints it, `cat`s
every secret file it can find (the backend's file, its backup, the admin/Vault token
files) and ends with a token straddling the 500-character truncation edge. One rotation
completes (hooks fail with on_error = "warn"), one is rolled back by the check.

Then: no secret, nor any 24-character piece of one, in any command's stdout or stderr, any
file of the state store (run records, account records, audit.jsonl), the metrics file or
any webhook body; and no child saw the admin token or a backend credential.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import record_counts, report_dir
from tests.support.rotator_cli import CliSetup, json_lines, seed_file
from tests.support.simulator_fixtures import SimulatorHandle, unique_username

PIECE = 24
ALLOWED_CHILD_ENV = {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "MOTHERDUCK_TOKEN", "HOOK_NOTE"}

HOSTILE = r"""
import json, os, pathlib, sys
point, root = sys.argv[1], pathlib.Path(sys.argv[2])
env = dict(os.environ)
(root / "child-env").mkdir(exist_ok=True)
(root / "child-env" / f"{point}-{os.getpid()}.json").write_text(json.dumps(env))
print("ENV", json.dumps(env))
files = sorted((root / "secrets").glob("*")) + [root / "admin-token", root / "vault-token"]
for path in files:
    print("CAT", path.name, path.read_text(errors="replace"))
print("ERR", env.get("MOTHERDUCK_TOKEN", "-"), file=sys.stderr)
# A secret cut by the 500-character tail, at a different place on every run.
counter = root / "counter"
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
for_edge = [env.get("MOTHERDUCK_TOKEN"), (root / "admin-token").read_text().strip(),
            (root / "vault-token").read_text().strip()]
tok = [t for t in for_edge if t][n % len([t for t in for_edge if t])]
keep = [1, 24, 25, len(tok) // 2, len(tok) - 1][n % 5]
sys.stdout.write(tok + "." * (500 - keep))
sys.stdout.flush()
fail = point != "check" or (root / "fail-check").exists()
sys.exit(1 if fail else 0)
"""


class Listener(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[str]:
    Listener.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def pieces(secret: str) -> set[str]:
    if len(secret) <= PIECE:
        return {secret}
    return {secret[i : i + PIECE] for i in range(len(secret) - PIECE + 1)}


def leaks(blobs: dict[str, str], secrets_: dict[str, str]) -> list[str]:
    """`where: which secret` for every blob holding a secret or a 24-char piece of one."""
    found = []
    for name, secret in secrets_.items():
        wanted = pieces(secret)
        for where, text in blobs.items():
            if any(piece in text for piece in wanted):
                found.append(f"{where}: {name}")
    return found


def test_no_secret_leaks_through_children_notifications_or_state(
    simulator: SimulatorHandle, listener: str, tmp_path: Path
) -> None:
    """Hostile hooks and checks, notifications, metrics and audit: zero secrets out."""
    user = unique_username("svc_leak")
    old_secret, old_id = simulator.seed(user)
    creds = {
        "VAULT_TOKEN": "hvs." + secrets.token_urlsafe(68),
        "VAULT_SECRET_ID": secrets.token_hex(18),
        "VAULT_ROLE_ID": secrets.token_hex(18),
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "AWS_SESSION_TOKEN": secrets.token_urlsafe(180),
    }
    webhook = f"{listener}/hook/{secrets.token_hex(16)}"
    slack = f"{listener}/services/T0000/B0000/{secrets.token_hex(12)}"
    (tmp_path / "admin-token").write_text(simulator.admin_token + "\n")
    (tmp_path / "vault-token").write_text(creds["VAULT_TOKEN"] + "\n")
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE)

    def child(point: str) -> str:
        return json.dumps([sys.executable, str(script), point, str(tmp_path)])

    targets = f'{{type = "webhook", url = "{webhook}"}}, {{type = "slack", url = "{slack}"}}'
    policy = "\n".join(
        [
            f'checks = ["readback", {{type = "command", command = {child("check")}}}]',
            "[defaults.hooks.after_store]",
            f"command = {child('after_store')}",
            'on_error = "warn"',
            "pass_token = true",
            'env = {HOOK_NOTE = "from the hook table"}',
            "[defaults.hooks.after_promote]",
            f"command = {child('after_promote')}",
            'on_error = "warn"',
            "[defaults.hooks.on_failure]",
            f"command = {child('on_failure')}",
        ]
    )
    cli = CliSetup(tmp_path, simulator.url, simulator.admin_token, [user], policy=policy)
    cli.extra_env = creds
    cli.write()
    with cli.config_path.open("a") as handle:
        handle.write(f"\n[notifications]\non_success = [{targets}]\non_failure = [{targets}]\n")
    seed_file(cli.secret_file(user), old_secret, old_id)

    outputs: dict[str, str] = {}

    def run(*args: str) -> Any:
        done = cli.run(*args)
        outputs[f"stdout of {' '.join(args)}"] = done.stdout
        outputs[f"stderr of {' '.join(args)}"] = done.stderr
        return done

    metrics = tmp_path / "metrics.prom"
    assert run("adopt", user, "--token-id", old_id).returncode == 0
    first = run("rotate", user, "--force", "--json", "--metrics-file", str(metrics))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "hook.failed" in first.stderr  # the hooks' output was reported (redacted)
    (tmp_path / "fail-check").touch()
    second = run("rotate", user, "--force", "--json", "--metrics-file", str(metrics))
    assert second.returncode == 1, second.stderr[-3000:]
    [rolled] = json_lines(second.stdout)
    assert rolled["result"] == "rolled_back" and "command check" in rolled["message"]
    assert "***" in rolled["message"]  # the child's output is there, masked
    run("history", user, "--json")
    run("status", "--json")

    blobs = dict(outputs)
    for path in cli.state_dir.rglob("*"):
        if path.is_file():
            blobs[f"state file {path.relative_to(tmp_path)}"] = path.read_text(errors="replace")
    blobs["metrics"] = metrics.read_text()
    assert len(Listener.bodies) == 4  # success and failure, each to webhook and Slack
    for i, body in enumerate(Listener.bodies):
        blobs[f"webhook body {i}"] = body.decode(errors="replace")
    assert any("audit.jsonl" in where for where in blobs)

    known = {
        "admin token": simulator.admin_token,
        "webhook URL": webhook,
        "webhook URL secret": webhook.rsplit("/", 1)[1],
        "Slack URL": slack,
        "Slack URL secret": slack.rsplit("/", 1)[1],
        **creds,
    }
    known.update({f"simulator token {s[-6:]}": s for s in simulator.all_secrets()})
    assert leaks(blobs, known) == []

    envs = {p.name: json.loads(p.read_text()) for p in (tmp_path / "child-env").glob("*.json")}
    points = {name.split("-")[0] for name in envs}
    assert points == {"after_store", "after_promote", "check", "on_failure"}
    backend_creds = {simulator.admin_token, *creds.values()}
    for name, env in envs.items():
        unexpected = {
            k for k in env if k not in ALLOWED_CHILD_ENV and not k.startswith(("ROTATOR_", "LC_"))
        }
        assert not unexpected, f"{name} got {sorted(unexpected)}"
        assert not backend_creds & set(env.values()), f"{name} got a credential"
        assert ("MOTHERDUCK_TOKEN" in env) == name.startswith(("after_store", "check")), name
    assert all(env.get("HOOK_NOTE") for n, env in envs.items() if n.startswith("after_store"))
    counts = {
        "kind": "leak_scan",
        "secrets": len(known),
        "blobs": len(blobs),
        "children": len(envs),
        "leaks": 0,
    }
    assert record_counts(report_dir(tmp_path / "reliability"), "leak-scan", counts).exists()
