"""The baseline: a minimal hand-written rotation with httpx, no checkpoints, no checks.

create a token -> write the token file (temp file, fsync, rename, fsync the directory:
the same guarantee the file backend gives the consumer's file) -> revoke the old token.

As a script (for the subprocess comparison):
    MOTHERDUCK_ADMIN_TOKEN=... python benchmarks/hand_script.py URL USERNAME OLD_ID PATH
prints the new token id.

Over a fleet (the script's logic over many accounts, as its author would write it: a
thread pool, one HTTP client): every `DIR/<username>.json` token file is rotated,
`--concurrency` at a time; prints the number rotated.
    MOTHERDUCK_ADMIN_TOKEN=... python benchmarks/hand_script.py --fleet DIR --concurrency 32 URL

`--like-rotator` (fleet only) adds the three token listings rotator makes, so the script
makes rotator's five sequential requests per rotation: before the create (the live tokens),
before the revoke (the new token must be live) and after it (the old one must be gone).
Still no checkpoints and no readback: what the thread-per-rotation shape itself costs on a
machine for rotator's network pattern (issue 16, row 2), with none of rotator's own work.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def write_file(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def live_ids(http: httpx.Client, url: str, auth: dict[str, str], username: str) -> set[str]:
    listed = http.get(f"{url}/v1/users/{username}/tokens", headers=auth)
    listed.raise_for_status()
    return {token["id"] for token in listed.json()["tokens"]}


def rotate_once(
    http: httpx.Client, url: str, admin: str, username: str, old_id: str, path: Path,
    *, like_rotator: bool = False,
) -> str:
    """One rotation; returns the new token id."""
    auth = {"Authorization": f"Bearer {admin}"}
    if like_rotator:
        live_ids(http, url, auth, username)
    created = http.post(
        f"{url}/v1/users/{username}/tokens",
        json={"name": f"script-{uuid.uuid4().hex[:8]}", "token_type": "read_write"},
        headers=auth,
    )
    created.raise_for_status()
    doc = created.json()
    write_file(path, json.dumps({"motherduck_token": doc["token"], "token_id": doc["id"]}).encode())
    if like_rotator and doc["id"] not in live_ids(http, url, auth, username):
        raise RuntimeError(f"{username}: the new token is not live; not revoking")
    http.delete(f"{url}/v1/users/{username}/tokens/{old_id}", headers=auth).raise_for_status()
    if like_rotator and old_id in live_ids(http, url, auth, username):
        raise RuntimeError(f"{username}: the old token is still live after its revoke")
    return str(doc["id"])


def rotate_fleet(url: str, admin: str, directory: Path, concurrency: int,
                 *, like_rotator: bool = False) -> int:
    """Rotate every `<username>.json` token file in `directory`; returns how many."""
    paths = sorted(directory.glob("*.json"))

    with httpx.Client(timeout=30.0, limits=httpx.Limits(max_connections=concurrency,
                                                        max_keepalive_connections=concurrency)
                      ) as http:

        def one(path: Path) -> str:
            old_id = json.loads(path.read_text())["token_id"]
            return rotate_once(http, url, admin, path.stem, old_id, path,
                               like_rotator=like_rotator)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return len(list(pool.map(one, paths)))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--fleet"]:
        like_rotator = "--like-rotator" in argv
        _, directory, _, concurrency, url = [arg for arg in argv if arg != "--like-rotator"]
        print(rotate_fleet(url, os.environ["MOTHERDUCK_ADMIN_TOKEN"], Path(directory),
                           int(concurrency), like_rotator=like_rotator))
        return 0
    url, username, old_id, path = argv
    with httpx.Client(timeout=10.0) as http:
        print(rotate_once(http, url, os.environ["MOTHERDUCK_ADMIN_TOKEN"], username, old_id,
                          Path(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
