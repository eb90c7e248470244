"""Attack on issue 14's watch-driven repair: a copy that fails for longer than the
retries last.

A commit is made; the node placed to hold it cannot reach the holder's API for a while
(a partition between the two hosts while both still reach etcd, the holder's daemon
busy or restarting within its lease). Before the fix the worker tried five times, three
seconds apart, then left the copy to the next full sweep (600 s by default): nothing in
etcd changes when the partition heals, so the repo stayed under its replica count for up
to ten minutes. Retries now back off (doubling, capped) for minutes, not seconds.

The driver runs here on a fake watch and a fake replicator: the test hands it the change
itself, and the fetch fails with Unavailable for a set time, then works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from pfs_volume.cluster import repair
from pfs_volume.cluster.repair import RepairDriver
from pfs_volume.errors import Unavailable
from pfs_volume.meta.etcd_watch import WatchEvent
from tests.repair_stubs import Idle, Placed

PREFIX = "/pfs"


class FakeWatch:
    def __init__(
        self,
        endpoints: Any,
        prefix: str,
        start_revision: int,
        on_events: Callable[[list[WatchEvent]], None],
        on_lost: Callable[[str], None],
        **_: Any,
    ) -> None:
        self.on_events = on_events
        self.running = False

    def start(self) -> FakeWatch:
        self.running = True
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.running = False


class FakeClient:
    endpoints = ("http://unused",)

    def revision(self) -> int:
        return 1


class Registry:
    ttl = 10
    client = FakeClient()
    prefix = PREFIX


class FlakyReplicator:
    """Fetches fail with Unavailable until ``heals_at``."""

    def __init__(self, heals_at: float) -> None:
        self.registry = Registry()
        self.node_id = "b"
        self.store = None
        self.heals_at = heals_at
        self.attempts = 0
        self.fetched: list[tuple[str, str]] = []
        self.passes = 0

    def repair(self) -> tuple[list[str], list[Placed]]:
        self.passes += 1
        return ["a", "b"], [Placed("photos", 2, ("a", "b"))]

    def fetch(self, repo: str, commit: str) -> None:
        self.attempts += 1
        if time.monotonic() < self.heals_at:
            raise Unavailable("holder a: connection timed out")
        self.fetched.append((repo, commit))


def test_a_copy_failing_past_the_first_retries_is_still_made_before_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scale = 0.1  # the daemon's delays, ten times faster
    monkeypatch.setattr(repair, "RETRY_DELAY", repair.RETRY_DELAY * scale)
    if hasattr(repair, "RETRY_MAX_DELAY"):
        monkeypatch.setattr(repair, "RETRY_MAX_DELAY", repair.RETRY_MAX_DELAY * scale)
    outage = 30 * scale  # a 30 s partition between holder and placed node
    replicator = FlakyReplicator(heals_at=float("inf"))
    watches: list[FakeWatch] = []

    def make_watch(*args: Any, **kwargs: Any) -> FakeWatch:
        watches.append(FakeWatch(*args, **kwargs))
        return watches[-1]

    driver = RepairDriver(
        replicator,  # type: ignore[arg-type]
        Idle(),  # type: ignore[arg-type]
        Idle(),  # type: ignore[arg-type]
        sweep_interval=3600,
        watch=make_watch,  # type: ignore[arg-type]
    )
    driver.start()
    try:
        deadline = time.monotonic() + 10
        while replicator.passes < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert replicator.passes == 1 and watches
        replicator.heals_at = time.monotonic() + outage
        record = {"id": "c1", "holders": ["a"]}
        watches[-1].on_events(
            [WatchEvent(f"{PREFIX}/commits/photos/c1", json.dumps(record).encode(), False, 9, 1)]
        )
        deadline = time.monotonic() + outage + 60 * scale + 2
        while not replicator.fetched and time.monotonic() < deadline:
            time.sleep(0.05)
        assert replicator.fetched == [("photos", "c1")], (
            f"gave up after {replicator.attempts} attempts: the copy waits for the sweep"
        )
        assert replicator.passes == 1  # no sweep did it
    finally:
        driver.stop()


def test_a_mount_ending_here_purges_again_while_a_deleted_repo_is_left() -> None:
    from pfs_volume.cluster.repair_events import PurgeDeleted, RepairModel

    model = RepairModel(PREFIX, "b")
    model.reset(["a", "b"], [Placed("photos", 2, ("a", "b"))])
    gone = WatchEvent(f"{PREFIX}/local/b/mounts/m1", b"", True, 5, 0)
    assert model.apply(gone) == []  # nothing deleted: an unmount is nothing to repair
    assert model.apply(WatchEvent(f"{PREFIX}/repos/photos", b"", True, 6, 0)) == [PurgeDeleted()]
    assert model.apply(WatchEvent(f"{PREFIX}/local/a/mounts/m2", b"", True, 7, 0)) == []
    assert model.apply(gone) == [PurgeDeleted()]
    record = json.dumps({"replicas": 1, "placement": ["a"]}).encode()
    assert model.apply(WatchEvent(f"{PREFIX}/repos/photos", record, False, 8, 1)) == []
    assert model.apply(gone) == []  # made again: nothing left to purge


def test_a_mount_ending_here_drops_pruned_copies_again() -> None:
    from pfs_volume.cluster.repair_events import DropPruned, RepairModel, Unlist

    model = RepairModel(PREFIX, "b")
    model.reset(["a", "b"], [Placed("photos", 2, ("a", "b"))])
    gone = WatchEvent(f"{PREFIX}/local/b/mounts/m1", b"", True, 5, 0)
    pruned = json.dumps({"holders": ["a", "b"], "pruned": True}).encode()
    event = WatchEvent(f"{PREFIX}/commits/photos/c1", pruned, False, 6, 2)
    assert model.apply(event) == [Unlist("photos", "c1"), DropPruned("photos")]
    assert model.apply(gone) == [DropPruned("photos")]
    model.reset(["a", "b"], [Placed("photos", 2, ("a", "b"))])
    assert model.apply(gone) == []  # the sweep dropped what was left
