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


def rotate_once(
    http: httpx.Client, url: str, admin: str, username: str, old_id: str, path: Path
) -> str:
    """One rotation; returns the new token id."""
    auth = {"Authorization": f"Bearer {admin}"}
    created = http.post(
        f"{url}/v1/users/{username}/tokens",
        json={"name": f"script-{uuid.uuid4().hex[:8]}", "token_type": "read_write"},
        headers=auth,
    )
    created.raise_for_status()
    doc = created.json()
    write_file(path, json.dumps({"motherduck_token": doc["token"], "token_id": doc["id"]}).encode())
    http.delete(f"{url}/v1/users/{username}/tokens/{old_id}", headers=auth).raise_for_status()
    return str(doc["id"])


def rotate_fleet(url: str, admin: str, directory: Path, concurrency: int) -> int:
    """Rotate every `<username>.json` token file in `directory`; returns how many."""
    paths = sorted(directory.glob("*.json"))

    with httpx.Client(timeout=30.0, limits=httpx.Limits(max_connections=concurrency,
                                                        max_keepalive_connections=concurrency)
                      ) as http:

        def one(path: Path) -> str:
            old_id = json.loads(path.read_text())["token_id"]
            return rotate_once(http, url, admin, path.stem, old_id, path)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return len(list(pool.map(one, paths)))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--fleet"]:
        _, directory, _, concurrency, url = argv
        print(rotate_fleet(url, os.environ["MOTHERDUCK_ADMIN_TOKEN"], Path(directory),
                           int(concurrency)))
        return 0
    url, username, old_id, path = argv
    with httpx.Client(timeout=10.0) as http:
        print(rotate_once(http, url, os.environ["MOTHERDUCK_ADMIN_TOKEN"], username, old_id,
                          Path(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
