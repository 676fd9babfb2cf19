"""Micro-benchmark: one FileStore.save (a real run doc + account doc), fsync off and on.

Also an A/B of the document encoding: the same save with an indented `_write`
(json.dumps(indent=1), which falls back to the pure-Python encoder) against the one-line
JSON FileStore writes, interleaved.

    .venv/bin/python benchmarks/bench_checkpoint.py [--saves 400]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, save_result

from rotator.state.file import FileStore
from rotator.state.store import SCHEMA_VERSION

RUN_DOC: dict[str, Any] = {
    "run_id": "0f6c0d7e-3b7a-4c59-9d2e-1a2b3c4d5e6f",
    "account": "svc_bench",
    "state": "storing",
    "token_name": "rotator-svc_bench-0f6c0d7e",
    "started_at": "2026-11-23T01:00:00.000000+00:00",
    "updated_at": "2026-11-23T01:00:00.100000+00:00",
    "trigger": "cli",
    "version": 9,
    "old_token": {"id": "5b1f6a3e-1111-4c59-9d2e-1a2b3c4d5e6f", "name": "initial",
                  "created_ts": "2026-11-22T01:00:00+00:00", "expire_at": None,
                  "fingerprint": None},
    "new_token": {"id": "9c2e7b4f-2222-4c59-9d2e-1a2b3c4d5e6f",
                  "name": "rotator-svc_bench-0f6c0d7e",
                  "created_ts": "2026-11-23T01:00:00.050000+00:00", "expire_at": None,
                  "fingerprint": "0123456789abcdef"},
    "backends": {"file:/srv/secrets/svc_bench.json": {
        "state": "staged", "receipt": {"path": "/srv/secrets/svc_bench.json",
                                       "pending": "/srv/secrets/svc_bench.json.pending"},
        "error": None}},
    "create_attempts": 1, "revoke_attempts": 0, "revoke_not_before": None,
    "failure": None, "remaining": [], "undone": [], "lost_token_ids": [], "hooks_done": [],
    "events": [{"at": f"2026-11-23T01:00:00.{i:06d}+00:00", "state": s, "detail": None}
               for i, s in enumerate(["planned", "creating", "created", "storing", "stored",
                                      "verifying", "verified", "promoting"])],
}
ACCOUNT_DOC: dict[str, Any] = {
    "username": "svc_bench", "current_token": RUN_DOC["old_token"],
    "active_run_id": RUN_DOC["run_id"], "runs": [RUN_DOC["run_id"]] * 20,
    "last_run_id": None, "last_state": None, "last_success_at": None,
    "last_finished_at": None, "version": 12,
}


class IndentedStore(FileStore):
    """FileStore writing indented JSON (indent=1), for comparison."""

    def _encode(self, doc: dict[str, Any]) -> bytes:
        # FileStore writes through _encode; only the encoding differs here.
        return json.dumps({"schema": SCHEMA_VERSION, **doc}, sort_keys=True, indent=1).encode()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=400)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="rotator-bench-checkpoint-"))
    result: dict[str, Any] = {"saves": args.saves}
    try:
        for durable in (False, True):
            stores = {"indent1": IndentedStore(root / "s", durable=durable),
                      "current": FileStore(root / "s", durable=durable)}
            lease = stores["current"].acquire_lease("svc_bench", owner="bench",
                                                    ttl=timedelta(minutes=15))
            times: dict[str, list[float]] = {name: [] for name in stores}
            count = args.saves if not durable else max(args.saves // 3, 20)
            for i in range(count):
                order = list(stores.items())
                for name, store in order if i % 2 else order[::-1]:
                    started = time.perf_counter()
                    store.save(lease, run=RUN_DOC, account=ACCOUNT_DOC)
                    times[name].append(time.perf_counter() - started)
            stores["current"].release_lease(lease)
            key = "durable" if durable else "no_fsync"
            result[key] = {name: median(t) * 1000 for name, t in times.items()}
            result[key]["ratio_current_vs_indent1"] = (
                result[key]["current"] / result[key]["indent1"])
        encode = {}
        for name, fn in (
            ("indent1", lambda: json.dumps(RUN_DOC, sort_keys=True, indent=1)),
            ("current", lambda: json.dumps(RUN_DOC, sort_keys=True)),
        ):
            samples = []
            for _ in range(2000):
                started = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - started)
            encode[name] = median(samples) * 1000
        result["encode_run_doc_ms"] = encode
    finally:
        shutil.rmtree(root, ignore_errors=True)
    save_result("checkpoint", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
