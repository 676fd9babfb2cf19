"""How many MotherDuck requests a fleet has in flight: `--concurrency`, shared by its threads.

A fleet runs more rotations at once than it sends requests (rotator.ops.fleet_sizing
`rotations_in_flight`): each rotation spends part of its time on checkpoints, backend
writes and checks, and another one's request fills its slot meanwhile. `CallSlots` is what
keeps the requests themselves to `--concurrency`: every attempt of a call holds one slot
while it is sent and its answer read, and no slot while it waits to retry.

A call waits for a slot at most as long as its own time budget has left (the retry
policy's `timeout`), so it stays within the same budget as without slots. A call that
waited that long is sent anyway (logged `motherduck.slot_wait_exceeded`): the other calls
have been hanging for its whole budget, and a limit on load must not turn that into this
call's failure. In practice a wait is shorter: at most half as many rotations as there
are slots can be waiting, and every slot is freed within one attempt's timeout.

A wait for a slot sits between a run's lease fence and the request it guards (a create, a
revoke): a stall at the worst instant, which I4 already has to survive and the stall
harness proves it does (`fence:<effect>` pause points, tests/integration/
test_stall_harness.py). A lease that lapsed meanwhile is handled exactly as after a pause
there: the run's next fence finds it lost, and a token it minted meanwhile it revokes
itself (RunContext._fence_created).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import structlog

__all__ = ["CallSlots"]

log = structlog.get_logger("rotator.motherduck")


class CallSlots:
    """At most `limit` requests in flight among the threads that share this object."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"CallSlots limit must be at least 1, got {limit}")
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    def __repr__(self) -> str:
        return f"CallSlots(limit={self.limit})"

    @contextlib.contextmanager
    def slot(self, wait: float) -> Iterator[None]:
        """Hold a slot for the block; wait at most `wait` seconds for one (see above)."""
        wait = max(wait, 0.0)
        got = self._free.acquire(timeout=wait)
        if not got:
            log.warning("motherduck.slot_wait_exceeded", limit=self.limit, waited_s=round(wait, 3))
        try:
            yield
        finally:
            if got:
                self._free.release()
