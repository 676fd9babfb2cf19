"""`make demo`: a real rotation on the local MotherDuck simulator into the file backend.

Starts the simulator, seeds a service account and its first token (stored in a file as a
consumer would have it), records that token with `rotator adopt`, runs `rotator rotate`,
then shows from the outside that the old token is revoked and the new one works.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "demo-run"
BIN = Path(sys.executable).parent
ACCOUNT = "svc_demo"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*args: str, env: dict[str, str]) -> None:
    print("$ rotator " + " ".join(args), flush=True)
    done = subprocess.run([str(BIN / "rotator"), *args], env=env, cwd=WORK, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: `rotator {' '.join(args)}` exited {done.returncode}")


def wait_ready(ready: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: simulator exited with {proc.returncode}")
        if ready.exists():
            try:
                return str(json.loads(ready.read_text())["url"])
            except (ValueError, KeyError):
                pass
        time.sleep(0.05)
    raise SystemExit("demo: simulator did not become ready in time")


def whoami(url: str, token: str) -> str:
    response = httpx.get(f"{url}/_sim/whoami", headers={"Authorization": f"Bearer {token}"})
    if response.status_code == 200:
        return f"works (current_user = {response.json()['current_user']})"
    return f"rejected ({response.status_code} {response.json().get('message', '')})"


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "secrets").mkdir(parents=True)
    admin = "demo-admin-" + secrets.token_hex(16)
    step("starting the local MotherDuck simulator")
    ready = WORK / "simulator.json"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rotator.simulator",
            "--port",
            "0",
            # The token through the environment: anything on argv is visible in `ps`.
            "--admin-token-env",
            "ROTATOR_SIM_ADMIN_TOKEN",
            "--ready-file",
            str(ready),
        ],
        env={**os.environ, "ROTATOR_SIM_ADMIN_TOKEN": admin},
        stdout=subprocess.DEVNULL,
        stderr=open(WORK / "simulator.log", "wb"),  # noqa: SIM115 - lives as long as the process
    )
    try:
        url = wait_ready(ready, sim)
        print(f"simulator at {url} (pid {sim.pid})")
        step(f"seeding service account {ACCOUNT} and its first token")
        seeded = httpx.post(
            f"{url}/_sim/seed", json={"username": ACCOUNT, "token_name": "hand-made"}
        ).json()
        old_token, old_id = seeded["token"], seeded["id"]
        secret_file = WORK / "secrets" / f"{ACCOUNT}.json"
        secret_file.write_text(json.dumps({"motherduck_token": old_token, "token_id": old_id}))
        secret_file.chmod(0o600)
        print(f"token {old_id} written to {secret_file.relative_to(ROOT)}")
        (WORK / "rotator.toml").write_text(
            f'[motherduck]\napi_url = "{url}"\nadmin_token_env = "MOTHERDUCK_ADMIN_TOKEN"\n\n'
            '[state]\npath = ".rotator-state"\n\n'
            '[defaults]\nrotate_after = "30d"\nchecks = ["readback", "simulator"]\n\n'
            f'[[accounts]]\nusername = "{ACCOUNT}"\n'
            f'  [[accounts.backends]]\n  type = "file"\n  path = "secrets/{ACCOUNT}.json"\n'
        )
        env = {
            **os.environ,
            "MOTHERDUCK_ADMIN_TOKEN": admin,
            "ROTATOR_CONFIG": str(WORK / "rotator.toml"),
        }
        step("recording the existing token so the rotation may revoke it")
        run("adopt", ACCOUNT, "--token-id", old_id, env=env)
        step("rotating (forced: the token is young, and the demo cannot wait 30 days)")
        run("--log-format", "console", "rotate", ACCOUNT, "--force", env=env)
        step("what MotherDuck now lists for the account")
        run("tokens", ACCOUNT, env=env)
        new = json.loads(secret_file.read_text())
        step("checking both tokens against the simulator's data plane")
        print(f"old token {old_id}: {whoami(url, old_token)}")
        print(f"new token {new['token_id']}: {whoami(url, new['motherduck_token'])}")
        run("status", env=env)
        ok = whoami(url, new["motherduck_token"]).startswith("works") and not whoami(
            url, old_token
        ).startswith("works")
        print("\ndemo: " + ("OK - old token revoked, new token works" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
        print("simulator stopped")


if __name__ == "__main__":
    sys.exit(main())
