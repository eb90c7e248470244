"""After a write, List works out again only the volumes that read what the write changed
(``volumes/kept_listing.py``): a commit on master changes ``r`` and the names that walk
or match a prefix of the new commit, not the repo's other branches' volumes. On a real
pool, with SQLite and with etcd, and always equal to the whole answer."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.meta import EtcdClient, EtcdStore, MetadataStore, SqliteStore
from pfs_volume.meta.etcd_changes import EtcdChanges
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService
from pfs_volume.volumes.kept_listing import ListingWork
from pfs_volume.volumes.listing import volume_infos
from tests.etcd_cluster import EtcdCluster

FIRST = "abcdef01" + "0" * 24
SECOND = "12345601" + "0" * 24
THIRD = "abcdef02" + "0" * 24
"""Commit ids in the order they are made: THIRD makes the prefix ``abcdef`` ambiguous."""
OTHER_BRANCHES = 30


@pytest.fixture(params=["sqlite", "etcd"])
def store_of(
    request: pytest.FixtureRequest, tmp_path: Path, pool: BtrfsPool
) -> Iterator[MetadataStore]:
    if request.param == "sqlite":
        store = SqliteStore(pool.root / "meta.db")
        yield store
        store.close()
        return
    cluster = EtcdCluster(tmp_path / "etcd", members=1).start()
    client = EtcdClient(cluster.endpoints)
    changes = EtcdChanges(client, "/pfs", "here")
    try:
        yield EtcdStore(client, "here", changed_since=changes.since)
    finally:
        changes.stop()
        client.close()
        cluster.cleanup()


@pytest.fixture
def volumes(store_of: MetadataStore, pool: BtrfsPool) -> VolumeService:
    later = itertools.chain([FIRST, SECOND, THIRD], iter(lambda: secrets.token_hex(16), None))
    repos = RepoService(store_of, pool, new_id=lambda: next(later))
    return VolumeService(repos, store_of, "pfs", pool_changes=pool.changed_paths)


def commit(volumes: VolumeService, branch: str) -> None:
    path = volumes.repos.working_copy("r", branch)
    (path / "data").write_text(secrets.token_hex(4))
    volumes.repos.commit_working_copy("r", branch, "a step", "test")


def listed(volumes: VolumeService) -> dict[str, str]:
    answer = {v.name: v.mountpoint for v in volumes.list()}
    whole = {v.name: v.mountpoint for v in volume_infos(volumes.repos, volumes.store, "pfs")}
    assert answer == whole
    return answer


def test_a_write_works_out_again_only_the_volumes_that_read_it(volumes: VolumeService) -> None:
    volumes.create("r", {})
    commit(volumes, "master")
    commit(volumes, "master")
    assert volumes.repos.get_branch("r", "master").head == SECOND
    names = ["r", "pfs/r", "r@abcdef", f"r@{FIRST}", "r@1234560", "r@master~1", "r/dev"]
    names += [f"r/b{k}" for k in range(OTHER_BRANCHES)]
    for name in names:
        volumes.create(name, {})
    before = listed(volumes)
    assert before["r@abcdef"] and before["r@abcdef"] == before[f"r@{FIRST}"]
    assert before["r@master~1"] == before["r@abcdef"]
    assert listed(volumes) == before
    assert volumes.listing.last == ListingWork(resolved=0)  # kept: nothing changed

    commit(volumes, "master")  # THIRD: master moves, abcdef matches two commits now
    after = listed(volumes)
    assert after["r@abcdef"] == "", "an ambiguous prefix names nothing"
    assert after["r@master~1"] != before["r@master~1"]
    assert after["r"] == before["r"] and after[f"r@{FIRST}"] == before[f"r@{FIRST}"]
    # r and pfs/r (one meaning), r@abcdef (a prefix of THIRD), r@master~1 (a walk): not
    # the other branches' volumes, nor the other commits' names.
    assert 3 <= volumes.listing.last.resolved <= 5

    commit(volumes, "dev")
    assert listed(volumes)["r/dev"]
    assert volumes.listing.last.resolved <= 3  # r/dev, and the walk r@master~1

    assert before["r/b3"]
    volumes.repos.delete_branch("r", "b3")  # and its working copy
    assert listed(volumes)["r/b3"] == ""
    assert volumes.listing.last.resolved <= 2  # r/b3, and the walk r@master~1

    volumes.repos.drop_working_copy("r", "b4")
    assert listed(volumes)["r/b4"] == ""
    assert volumes.listing.last.resolved <= 2  # r/b4, and the walk r@master~1

    # A name that means nothing now (its walk lands on a pruned commit) still depends on
    # what it read: the next commit moves master, and master~1 is whole again.
    landed = volumes.repos.get_branch("r", "master").head
    assert landed is not None
    parent = volumes.repos.get_commit("r", landed).parent
    assert parent is not None
    volumes.store.mark_pruned("r", [parent])
    assert listed(volumes)["r@master~1"] == ""
    commit(volumes, "master")
    assert listed(volumes)["r@master~1"] == before["r"].replace(
        "branches/master", f"commits/{landed}"
    )
