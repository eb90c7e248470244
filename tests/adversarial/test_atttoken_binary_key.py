"""Attack on List's change token in a cluster (``meta/etcd_changes.py``): its watch covers
every key of etcd, so another application sharing etcd is heard too. A key that is not
UTF-8 (etcd keys are bytes) ended the watch as lost at each such write: List's kept
answer was never reused again while that application wrote (at 10,000 volumes each
List worked out again, about 1.6 s), and a line was logged for each restart."""

from __future__ import annotations

import base64
from pathlib import Path

import requests

from pfs_volume.cluster.repair_events import RepairModel
from pfs_volume.meta import EtcdClient
from pfs_volume.meta.etcd_changes import EtcdChanges
from pfs_volume.meta.etcd_watch import WatchEvent
from tests.etcd_cluster import EtcdCluster


def _put_raw(endpoint: str, key: bytes) -> None:
    payload = {"key": base64.b64encode(key).decode(), "value": ""}
    requests.post(f"{endpoint}/v3/kv/put", json=payload, timeout=10).raise_for_status()


def test_a_key_that_is_not_utf8_leaves_the_watch_running(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd", members=1).start()
    client = EtcdClient(cluster.endpoints)
    watched = EtcdChanges(client, "/pfs", "node-a")
    try:
        watched.token()
        before = watched.token()
        assert isinstance(before[0], int) and watched.watching  # type: ignore[index]
        for _ in range(3):
            _put_raw(cluster.endpoints[0], b"other-app/\xff\xfe")
            assert watched.token() == before
        assert watched.watching
        _put_raw(cluster.endpoints[0], b"/pfs/repos/\xff")  # one of ours: it counts
        after = watched.token()
        assert after != before and isinstance(after[0], int)  # type: ignore[index]
    finally:
        watched.stop()
        client.close()
        cluster.cleanup()


def test_repair_ignores_a_key_that_is_not_utf8() -> None:
    """Repair's own watch (of the prefix) now hears such a key instead of ending: a key
    pfs never writes calls for no work."""
    model = RepairModel("/pfs", "node-a")
    model.reset(["node-a"], [])
    key = b"/pfs/repos/\xff".decode(errors="surrogateescape")
    value = b'{"replicas": 1, "placement": ["node-a"]}'
    assert model.apply(WatchEvent(key, value, False, 5, 1)) == []
