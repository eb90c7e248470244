"""Replicas per node for placing new repos: counted from the repo records, read again
once the count is older than a bound, and kept current between reads with this node's
own placements."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from pfs_volume.cluster import placement

LOADS_MAX_AGE = 1.0
"""Seconds a read of every repo record serves new placements here. Creates on other
nodes within this window (plus the read itself) are what this node's choice does not
see: the overshoot over the band is at most the number of those placed on one node."""


class PlacementLoads:
    """How many repos each node is placed on, as this node last read them.

    Args:
        read: every repo record (``MetadataStore.list_repos``).
        max_age: seconds a read is used before the next placement reads again.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        read: Callable[[], Iterable[placement.Placed]],
        max_age: float = LOADS_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.max_age = max_age
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.read_at: float | None = None
        self.guard = threading.Lock()

    def choose(self, repo: str, live: Iterable[str], replicas: int) -> tuple[str, ...]:
        """``placement.choose`` for a new repo over these loads, counted in at once so
        that the next placement here sees it, read or not. One at a time per node."""
        with self.guard:
            now = self.clock()
            if self.read_at is None or now - self.read_at >= self.max_age:
                records = self.read()
                self.counts = Counter(node for record in records for node in set(record.placement))
                self.read_at = now
            alive = set(live)
            loads = {node: self.counts.get(node, 0) for node in alive}
            chosen = placement.choose(repo, alive, replicas, loads)
            self.counts.update(chosen)
            return chosen
