"""Attack on List's change token in a cluster (``meta/etcd_changes.py``): etcd restored
from a backup. Its revision goes back, below what the watch of the old history had
delivered; a watch that is lost but not replaced yet (``RESTART_AFTER``), or one whose
connection is half-open and has not noticed (``silence_limit``), must not make the
restored store's tokens equal the old history's: List would keep the answer worked out
before the restore, showing a volume the restore removed and missing one created after
it, for as long as the revision stays below the old one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.meta import EtcdClient, EtcdStore, VolumeRecord, etcd_changes
from pfs_volume.meta.etcd_changes import EtcdChanges
from pfs_volume.meta.etcd_watch import PrefixWatch
from tests.contract.test_metadata_store import T0
from tests.etcd_cluster import EtcdCluster
from tests.kept_answer import KeptAnswer

HERE = "node-a"


def _restore(cluster: EtcdCluster, backup: Path) -> None:
    """What an operator does to go back to a backup: stop etcd, restore, start it."""
    cluster.stop(0)
    shutil.rmtree(cluster.data_dir(0))
    peer = f"http://127.0.0.1:{cluster.peer_ports[0]}"
    restore = ["etcdctl", "snapshot", "restore", str(backup)]
    restore += ["--name", cluster.names[0], "--data-dir", str(cluster.data_dir(0))]
    restore += ["--initial-cluster", f"{cluster.names[0]}={peer}"]
    restore += ["--initial-cluster-token", cluster.token]
    restore += ["--initial-advertise-peer-urls", peer]
    subprocess.run(
        restore,
        check=True,
        capture_output=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    cluster.restart(0)


class HalfOpen(PrefixWatch):
    """A watch whose connection went half-open (the etcd host lost power): it never
    hears that etcd went away, until its silence limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_lost = lambda reason: None


@pytest.mark.parametrize("watch", ["lost", "half-open"])
def test_a_restore_from_backup_never_leaves_list_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch: str
) -> None:
    if watch == "lost":
        # The watch lost at the restore was started less than RESTART_AFTER before (an
        # earlier blip of etcd): widened here so that the test does not race the clock.
        monkeypatch.setattr(etcd_changes, "RESTART_AFTER", 600.0)
    cluster = EtcdCluster(tmp_path / "etcd", members=1).start()
    client = EtcdClient(cluster.endpoints)
    make = HalfOpen if watch == "half-open" else PrefixWatch
    watched = EtcdChanges(client, "/pfs", HERE, watch=make)
    try:
        here = EtcdStore(client, HERE, changed_since=watched.since)
        listing = KeptAnswer(lambda: [v.name for v in here.list_volumes()], here.change_token)
        here.add_volume(VolumeRecord("kept", "photos", T0))
        backup = tmp_path / "backup.db"
        subprocess.run(
            ["etcdctl", "--endpoints", cluster.endpoints[0], "snapshot", "save", str(backup)],
            check=True,
            capture_output=True,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
            timeout=60,
        )
        for i in range(20):  # the history after the backup
            here.add_volume(VolumeRecord(f"later{i}", "photos", T0))
        assert len(listing.answer()) == 21 and watched.watching
        assert listing.answer() is listing.answer()

        _restore(cluster, backup)
        here.add_volume(VolumeRecord("after", "photos", T0))
        assert listing.answer() == ["after", "kept"]
    finally:
        watched.stop()
        client.close()
        cluster.cleanup()


def test_a_revision_that_goes_back_retires_the_watch_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against a fake watch: a running watch that has not noticed the restore is stopped
    and replaced, the fallback token of the new history differs from the old one's at the
    same revision, and the next calls do not see the restore again."""
    from tests.unit.test_etcd_changes import FakeClient, FakeWatch, event

    monkeypatch.setattr(etcd_changes, "CATCH_UP", 0.01)
    FakeWatch.made = []
    client = FakeClient()
    changes = EtcdChanges(client, "/pfs", HERE, watch=FakeWatch)  # type: ignore[arg-type]
    changes.token()
    old = FakeWatch.made[-1]
    client.revision_now = 30
    old.on_events([event("/pfs/repos/photos", r) for r in range(11, 31)])
    before = changes.token()
    client.revision_now = 12  # restored from a backup taken at 12
    fallback_before = ("revision", 0, 12)
    after = changes.token()
    assert old.stopped and len(FakeWatch.made) == 2
    assert after != before and after != fallback_before
    new = FakeWatch.made[-1]
    assert new.start_revision == 13
    assert changes.token() == after  # noticed once: nothing moved since
    client.revision_now = 13
    assert changes.token() not in (before, after, fallback_before, ("revision", 0, 13))
    new.on_events([event("/pfs/nodes/x", 13)])
    assert changes.token() == after
    changes.stop()
