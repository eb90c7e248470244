"""PrefixWatch against a real etcd: changes under the prefix arrive in order from the
start revision, and a watch that cannot deliver them (start revision compacted) says so
instead of going quiet. (An etcd restart: ``tests/cluster/test_repair_watch.py``.)"""

from __future__ import annotations

import time
from collections.abc import Callable

from pfs_volume.meta.etcd_client import EtcdClient
from pfs_volume.meta.etcd_watch import PrefixWatch, WatchEvent


def wait(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not check():
        time.sleep(0.05)
    assert check()


def test_changes_arrive_in_order_from_the_start_revision(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    etcd_client.put(f"{etcd_prefix}/before", "0")
    start = etcd_client.revision() + 1
    got: list[WatchEvent] = []
    lost: list[str] = []
    watch = PrefixWatch(etcd_client.endpoints, f"{etcd_prefix}/", start, got.extend, lost.append)
    etcd_client.put(f"{etcd_prefix}/a", "1")  # before the watch starts: still delivered
    watch.start()
    try:
        etcd_client.delete(f"{etcd_prefix}/before")
        etcd_client.put(f"{etcd_prefix}-other/x", "outside the prefix")
        etcd_client.put(f"{etcd_prefix}/a", "2")
        wait(lambda: len(got) >= 3)
    finally:
        watch.stop()
    assert [(e.key[len(etcd_prefix) :], e.value, e.deleted) for e in got] == [
        ("/a", b"1", False),
        ("/before", b"", True),
        ("/a", b"2", False),
    ]
    assert [e.version for e in got] == [1, 0, 2]
    assert got == sorted(got, key=lambda e: e.revision)
    assert lost == []  # stopped, not lost
    assert not watch.running


def test_a_compacted_start_revision_is_reported_lost(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    start = etcd_client.revision() + 1
    for index in range(3):
        etcd_client.put(f"{etcd_prefix}/k", str(index))
    now = etcd_client.revision()
    etcd_client._post("kv/compaction", {"revision": now}, etcd_client._deadline())
    got: list[WatchEvent] = []
    lost: list[str] = []
    watch = PrefixWatch(etcd_client.endpoints, f"{etcd_prefix}/", start, got.extend, lost.append)
    watch.start()
    try:
        wait(lambda: bool(lost))
    finally:
        watch.stop()
    assert "compacted" in lost[0] and got == []
