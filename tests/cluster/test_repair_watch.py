"""Repair driven by etcd changes, with the full sweep an hour away: copies follow a
placement change and a node's death at once, and a watch lost to an etcd restart is
replaced (the restart makes every node sweep, then watch again).

One cluster for the module (one etcd member, three nodes with ``--repair-sweep 3600``),
so the three tests run in order on it, on one xdist worker: the last one kills a node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pfs_volume.cluster import placement
from tests.cluster.conftest import WatchCluster, holders, wait_for

pytestmark = pytest.mark.xdist_group("repair-watch")

NODES = ["node0", "node1", "node2"]
PROMPTLY = 10.0
"""Seconds a watch-driven copy may take (a sweep would take an hour)."""


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchCluster]:
    made = WatchCluster(tmp_path_factory.mktemp("watch"), NODES)
    try:
        yield made
    finally:
        made.cleanup()


def test_a_replica_added_by_placement_copies_without_a_sweep(watched: WatchCluster) -> None:
    a, b, _c = watched.nodes
    repo = watched.placed_alone_on("node0", "wide")
    a.cli("repo", "create", repo, "--replicas", "1")
    head = a.write_commit(repo, {"f.bin": os.urandom(64 << 10)})
    assert holders(a, repo, head) == ["node0"]
    watched.add_replica(repo, "node1")
    wait_for(lambda: "node1" in holders(a, repo, head), PROMPTLY, "node1 to copy the commit")
    assert b.read_commit(repo, head) == a.read_commit(repo, head)


def test_a_lost_watch_is_replaced_after_an_etcd_restart(watched: WatchCluster) -> None:
    a, _b, c = watched.nodes
    repo = watched.placed_alone_on("node0", "restart")
    a.cli("repo", "create", repo, "--replicas", "1")
    head = a.write_commit(repo, {"f.bin": os.urandom(64 << 10)})
    watched.etcd.stop(0)
    watched.etcd.restart(0)
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 30, "the nodes back in etcd")
    for node in watched.nodes:
        wait_for(lambda node=node: "watch lost" in node.log(), PROMPTLY, "the watch lost")
    watched.add_replica(repo, "node2")
    wait_for(lambda: "node2" in holders(a, repo, head), PROMPTLY, "node2 to copy the commit")
    assert c.read_commit(repo, head) == a.read_commit(repo, head)


def test_a_killed_nodes_repos_are_copied_again(watched: WatchCluster) -> None:
    a, b, _c = watched.nodes
    repo = next(
        f"pair{i}"
        for i in range(200)
        if placement.choose(f"pair{i}", NODES, 2) == ("node0", "node1")
    )
    a.cli("repo", "create", repo, "--replicas", "2")
    head = a.write_commit(repo, {"f.bin": os.urandom(64 << 10)})
    wait_for(lambda: holders(a, repo, head) == ["node0", "node1"], PROMPTLY, "two copies")
    b.kill()

    def repaired() -> bool:
        info = a.cli_json("repo", "inspect", repo)
        return info["placement"] == ["node0", "node2"] and "node2" in holders(a, repo, head)

    wait_for(repaired, PROMPTLY + 5, "node2 to replace node1 and copy the commit")
