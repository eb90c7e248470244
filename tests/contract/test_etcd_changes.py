"""List's change token in a cluster (``meta/etcd_changes.py``), against a real etcd: the
membership heartbeats, write locks and other nodes' own records leave it alone, every
other kind of write (this node's or another's) moves it before the write call returns,
and a watch lost to an etcd restart never leaves a List stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs_volume.meta import EtcdClient, EtcdStore, VolumeRecord
from pfs_volume.meta.etcd_changes import EtcdChanges
from tests.contract.test_change_token import WRITES, _ready
from tests.contract.test_metadata_store import T0, with_repo
from tests.etcd_cluster import EtcdCluster
from tests.kept_answer import KeptAnswer

HERE, THERE = "node-a", "node-b"
OTHER_NODES_OWN = {
    "set_clean_generation",
    "add_mount",
    "use_mount",
    "unuse_mount",
    "delete_mount",
    "begin_commit",
    "abandon_commit",
    "add_volume",
    "delete_volume",
    "forget_deleted_repo",
}
"""Write kinds that touch only the writing node's ``local/<node>/`` records: another
node's List never reads them."""


@pytest.fixture
def changes(etcd_client: EtcdClient, etcd_prefix: str) -> Iterator[EtcdChanges]:
    watched = EtcdChanges(etcd_client, etcd_prefix, HERE)
    yield watched
    watched.stop()


def counted(token: object) -> bool:
    """True for a token of a watch (not the revision it falls back to)."""
    return isinstance(token, tuple) and isinstance(token[0], int)


def test_heartbeats_locks_and_other_nodes_records_leave_it(
    etcd_client: EtcdClient, etcd_prefix: str, changes: EtcdChanges
) -> None:
    there = EtcdStore(etcd_client, THERE, etcd_prefix)
    changes.token()  # starts the watch
    before = changes.token()
    assert counted(before)
    for beat in range(5):
        etcd_client.put(f"{etcd_prefix}/nodes/{HERE}", f'{{"beat":{beat}}}')
        etcd_client.put(f"{etcd_prefix}/nodes/{THERE}", f'{{"beat":{beat}}}')
        etcd_client.put(f"{etcd_prefix}/locks/photos/master", f'{{"node":"{THERE}"}}')
        etcd_client.put(f"{etcd_prefix}-other-cluster/repos/x", "{}")
        there.add_volume(VolumeRecord(f"v{beat}", "photos", T0))
        assert changes.token() == before, f"moved at beat {beat}"
    etcd_client.delete(f"{etcd_prefix}/nodes/{THERE}")  # a lease expiring
    assert changes.token() == before
    etcd_client.put(f"{etcd_prefix}/local/{HERE}/volumes/v", "{}")
    assert changes.token() != before


def test_every_write_here_moves_it_before_the_call_returns(
    etcd_client: EtcdClient, etcd_prefix: str, changes: EtcdChanges
) -> None:
    here = EtcdStore(etcd_client, HERE, etcd_prefix, changed_since=changes.since)
    _ready(here)
    unmoved = []
    for kind, write in WRITES:
        before = here.change_token()
        assert counted(before), kind
        assert here.change_token() == before, f"a read moved the token (before {kind})"
        write(here)
        if here.change_token() == before:
            unmoved.append(kind)
    assert unmoved == [], f"these writes left the token as it was: {unmoved}"


def test_every_write_elsewhere_that_list_reads_moves_it(
    etcd_client: EtcdClient, etcd_prefix: str, changes: EtcdChanges
) -> None:
    there = EtcdStore(etcd_client, THERE, etcd_prefix)
    _ready(there)
    wrong = []
    for kind, write in WRITES:
        before = changes.token()
        assert counted(before), kind
        write(there)
        moved = changes.token() != before
        if moved != (kind not in OTHER_NODES_OWN):
            wrong.append(f"{kind} {'moved' if moved else 'left'} it")
    assert wrong == []


def test_a_watch_lost_to_an_etcd_restart_never_leaves_list_stale(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path, members=1).start()
    client = EtcdClient(cluster.endpoints)
    watched = EtcdChanges(client, "/pfs", HERE)
    try:
        here = EtcdStore(client, HERE, changed_since=watched.since)
        there = EtcdStore(client, THERE)
        with_repo(there)
        listing = KeptAnswer(lambda: [v.name for v in here.list_volumes()], here.change_token)
        here.add_volume(VolumeRecord("photos", "photos", T0))
        assert listing.answer() == ["photos"] and watched.watching
        kept = listing.answer()
        assert listing.answer() is kept

        cluster.restart(0)  # the watch's stream ends with it
        here.add_volume(VolumeRecord("photos/dev", "photos", T0))
        assert listing.answer() == ["photos", "photos/dev"]
        there.delete_repo("photos")  # read by List, written elsewhere
        before = here.change_token()
        EtcdStore(client, HERE).add_volume(VolumeRecord("late", "photos", T0))
        assert here.change_token() != before
        assert "late" in listing.answer()

        # A new watch settles: heartbeats alone leave the answer kept again.
        for _ in range(40):
            if watched.watching and counted(here.change_token()):
                break
            time.sleep(0.1)
        kept = listing.answer()
        client.put(f"/pfs/nodes/{THERE}", "{}")
        assert listing.answer() is kept
    finally:
        watched.stop()
        client.close()
        cluster.cleanup()
