"""The file store's fingerprint key under concurrent first use."""

from __future__ import annotations

import threading
from pathlib import Path

from rotator.state.file import FileStore


class TestFingerprintKeyCreation:
    def test_concurrent_first_use_sees_one_whole_key(self, tmp_path: Path) -> None:
        """Many stores racing to create the key all get the same 32 bytes; none sees it empty."""
        root = tmp_path / "state"
        stores = [FileStore(root) for _ in range(16)]
        keys: list[bytes] = []
        errors: list[BaseException] = []
        start = threading.Barrier(len(stores))

        def first_use(store: FileStore) -> None:
            start.wait()
            try:
                keys.append(store.fingerprint_key())
            except BaseException as exc:  # the failure under test is a StateError
                errors.append(exc)

        threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(keys)) == 1 and len(keys[0]) == 32
        assert bytes.fromhex((root / "key").read_text()) == keys[0]
        assert (root / "key").stat().st_mode & 0o777 == 0o600
        assert [p.name for p in root.iterdir() if p.name.startswith(".key")] == []
