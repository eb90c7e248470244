"""Two nodes repair the same repo from different views of the live nodes (a node joined
between their reads): the first placement written stands, and the node that lost the
compare-and-swap copies nothing on the strength of its own, unwritten choice.

``Replicator.repair`` itself runs, on a real etcd with real registrations and repo
records; only its fetch is replaced, by the holder record a fetch ends with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from pfs_volume.cluster import placement
from pfs_volume.cluster.membership import NodeRegistry
from pfs_volume.cluster.replication import Replicator
from pfs_volume.meta import BranchRecord, CommitRecord, EtcdClient, EtcdStore, RepoRecord, utcnow
from tests.etcd_cluster import EtcdCluster

REPO = "photos"
COMMIT = "c" * 32


class NoMaintenance:
    """The repair pass's housekeeping, with nothing to do (no pool here)."""

    def purge_deleted_repos(self) -> None:
        pass

    def drop_pruned_copies(self, repo: str) -> None:
        pass


class RecordingReplicator(Replicator):
    """A replicator whose fetch records the copy as a whole fetch does, without bytes."""

    def __init__(self, store: EtcdStore, registry: NodeRegistry) -> None:
        none = cast(Any, None)
        super().__init__(store, none, none, none, cast(Any, NoMaintenance()), registry, none)

    def fetch(self, repo: str, commit_id: str, source: str | None = None) -> list[str]:
        self.store.add_holder(repo, commit_id, self.node_id)
        return []

    def has_copies(self, repo: str) -> bool:
        return False  # no pool here


class RaceFirst(EtcdStore):
    """An EtcdStore that runs ``before`` once, right before its first placement write."""

    def __init__(self, client: EtcdClient, node_id: str, prefix: str) -> None:
        super().__init__(client, node_id, prefix)
        self.before: list[Any] = []

    def set_placement(self, repo: str, expected: tuple[str, ...], new: tuple[str, ...]) -> bool:
        while self.before:
            self.before.pop()()
        return super().set_placement(repo, expected, new)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[list[str]]:
    cluster = EtcdCluster(tmp_path / "etcd", members=1).start()
    try:
        yield cluster.endpoints
    finally:
        cluster.cleanup()


def test_a_lost_placement_race_copies_nothing(etcd: list[str]) -> None:
    client = EtcdClient(etcd)
    prefix = "/pfs-race"
    # Roles by the repo's own preference order: first, second, joiner, loser, other.
    first, second, joiner, loser, other = placement.rank(REPO, ["a", "b", "c", "d", "e"])
    registries = {
        node: NodeRegistry(client, node, f"http://sim.invalid/{node}", lambda: (1, 1), 5, prefix)
        for node in (first, second, joiner, loser, other)
    }
    try:
        for node in (first, second, loser, other):
            registries[node].start()
        now = utcnow()
        EtcdStore(client, first, prefix).import_repo(
            RepoRecord(REPO, now, replicas=2, placement=tuple(sorted((first, second)))),
            [BranchRecord(REPO, "master", COMMIT, now)],
            [
                CommitRecord(
                    COMMIT,
                    REPO,
                    "master",
                    None,
                    now,
                    "",
                    "sim",
                    holders=tuple(sorted((first, second))),
                )
            ],
        )
        registries[second].stop(revoke=True)

        racer = RaceFirst(client, loser, prefix)
        winner = RecordingReplicator(EtcdStore(client, other, prefix), registries[other])

        def joiner_arrives_and_other_repairs() -> None:
            registries[joiner].start()
            winner.repair()

        racer.before.append(joiner_arrives_and_other_repairs)
        # The loser read the live nodes before the joiner came: it picks itself.
        RecordingReplicator(racer, registries[loser]).repair()

        store = EtcdStore(client, first, prefix)
        record = store.get_repo(REPO)
        assert record is not None
        assert record.placement == tuple(sorted((first, joiner)))
        commit = store.get_commit(REPO, COMMIT)
        assert commit is not None
        assert loser not in commit.holders, "copied for a placement that was not written"
        # The joiner's own pass makes the one copy the repo lost.
        RecordingReplicator(EtcdStore(client, joiner, prefix), registries[joiner]).repair()
        commit = store.get_commit(REPO, COMMIT)
        assert commit is not None
        assert set(commit.holders) - {second} == {first, joiner}
    finally:
        for registry in registries.values():
            registry.stop(revoke=True)
        client.close()
