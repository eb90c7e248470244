"""Which etcd keys List can depend on, and the change token's generations, against a
fake watch (the real one: ``tests/contract/test_etcd_changes.py``)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from pfs_volume.meta import etcd_changes
from pfs_volume.meta.etcd_changes import EtcdChanges, relevant
from pfs_volume.meta.etcd_watch import WatchEvent


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("/pfs/repos/photos", True),
        ("/pfs/branches/photos/master", True),
        ("/pfs/commits/photos/abc", True),
        ("/pfs/gone/photos", True),
        ("/pfs/docs/pipeline/p", True),
        ("/pfs/something-new/x", True),
        ("/pfs/local/node-a/volumes/photos", True),
        ("/pfs/local/node-a/wc/photos/master", True),
        ("/pfs/local/node-b/volumes/photos", False),
        ("/pfs/local/node-b/wc/photos/master", False),
        ("/pfs/nodes/node-a", False),
        ("/pfs/nodes/node-b", False),
        ("/pfs/locks/photos/master", False),
        ("/pfs-client/writes/c/1", False),
        ("/pfs2/repos/photos", False),
        ("/other/repos/photos", False),
    ],
)
def test_relevant(key: str, expected: bool) -> None:
    assert relevant(key, "/pfs", "node-a") is expected


class FakeClient:
    def __init__(self) -> None:
        self.endpoints = ["http://127.0.0.1:1"]
        self.revision_now = 10

    def revision(self) -> int:
        return self.revision_now


class FakeWatch:
    made: ClassVar[list[FakeWatch]] = []

    def __init__(
        self,
        endpoints: Any,
        prefix: str,
        start: int,
        on_events: Any,
        on_lost: Any,
        silence_limit: float | None = None,
    ) -> None:
        self.prefix, self.start_revision = prefix, start
        self.on_events, self.on_lost = on_events, on_lost
        self.stopped = False
        FakeWatch.made.append(self)

    def start(self) -> FakeWatch:
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped = True


def event(key: str, revision: int) -> WatchEvent:
    return WatchEvent(key, b"{}", False, revision, 1)


def test_generations_and_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_changes, "CATCH_UP", 0.01)
    monkeypatch.setattr(etcd_changes, "RESTART_AFTER", 0.0)
    FakeWatch.made = []
    client = FakeClient()
    changes = EtcdChanges(client, "/pfs", "node-a", watch=FakeWatch)  # type: ignore[arg-type]
    first = changes.token()
    watch = FakeWatch.made[-1]
    assert watch.prefix == "" and watch.start_revision == 11
    assert changes.token() == first

    client.revision_now = 11  # not delivered yet: the revision
    assert changes.token() == ("revision", 0, 11)
    watch.on_events([event("/pfs/nodes/node-b", 11)])
    assert changes.token() == first  # a heartbeat
    client.revision_now = 12
    watch.on_events([event("/pfs/repos/photos", 12)])
    second = changes.token()
    assert second != first

    watch.on_lost("etcd restarted")
    assert watch.stopped
    client.revision_now = 13  # a change the lost watch never saw
    third = changes.token()
    assert third not in (first, second)
    assert len(FakeWatch.made) == 2 and FakeWatch.made[-1].start_revision == 14
    watch.on_events([event("/pfs/nodes/node-b", 14)])  # the old watch is ignored
    assert changes.token() == third
    changes.stop()
    assert FakeWatch.made[-1].stopped
    assert changes.token() == ("revision", 0, 13)
