"""Attack on issue 14's watch-driven repair: a node placed to hold a commit tries to copy
it while its only holder is away (paused past its lease, restarting, cut off); the
holder comes back with the same id and its data, and nothing asks again.

The copy fails at once ("held by no live node": NotFound, counted as nothing to do) or
after a few retries (about 12 s), and the holder's return is a membership change that
moves no placement: before the fix the commit reached the placed node only at the next
full sweep (600 s by default; an hour here), the repo under its replica count until then.
A node that comes (back) now also has each repo placed here checked for commits it lacks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pfs_volume.cluster import placement
from pfs_volume.meta.etcd_keys import repo_json
from tests.cluster.conftest import LEASE_TTL, ClusterNode, WatchCluster, holders, wait_for

pytestmark = pytest.mark.xdist_group("att14-holder-back")

NODES = ["node0", "node1"]
PROMPTLY = 20.0


@pytest.fixture
def two(tmp_path: Path) -> Iterator[WatchCluster]:
    made = WatchCluster(tmp_path, NODES)
    try:
        yield made
    finally:
        made.cleanup()


def live(node: ClusterNode) -> list[str]:
    return sorted(n["id"] for n in node.cli_json("node", "list"))


def test_a_commit_whose_holder_comes_back_is_copied_promptly(two: WatchCluster) -> None:
    a, b = two.nodes
    repo = next(
        f"back{i}" for i in range(200) if placement.choose(f"back{i}", NODES, 1) == ("node0",)
    )
    a.cli("repo", "create", repo, "--replicas", "1")
    head = a.write_commit(repo, {"f.bin": os.urandom(64 << 10)})
    assert holders(a, repo, head) == ["node0"]

    a.pause()  # past its lease: node0 leaves the cluster, its data stays
    try:
        wait_for(lambda: live(b) == ["node1"], 6 * LEASE_TTL, "node0 to drop out")
        # The repo is to be on node1 as well; node1 tries to copy, and cannot: the only
        # holder is away.
        record = two.store.get_repo(repo)
        assert record is not None
        wider = tuple(sorted({*record.placement, "node0", "node1"}))
        two.client.put(
            two.store.keys.repo(repo),
            repo_json(replace(record, replicas=len(wider), placement=wider)),
        )
        wait_for(
            lambda: f"commit={head}" in b.log() or "held by no live node" in b.log(),
            PROMPTLY,
            "node1 to try the copy",
        )
        assert "node1" not in holders(b, repo, head)
    finally:
        a.resume()
    wait_for(lambda: live(b) == NODES, 6 * LEASE_TTL, "node0 back")
    wait_for(
        lambda: "node1" in holders(b, repo, head),
        PROMPTLY,
        "node1 to copy the commit once its holder is back (not at the next sweep)",
    )
    assert b.read_commit(repo, head) == a.read_commit(repo, head)


def test_a_repo_deleted_elsewhere_while_mounted_here_goes_when_the_mount_ends(
    two: WatchCluster,
) -> None:
    """Repo deletion checks only the deleting node's mounts: node1 may still mount it.
    node1's purge skips a repo it mounts, and its unmount changes only a node-local key
    repair did not look at: before the fix the deleted repo's data stayed in node1's
    pool until the next sweep (an hour here, 600 s by default)."""
    a, b = two.nodes
    repo = "gone0"
    a.cli("repo", "create", repo, "--replicas", "2")
    head = a.write_commit(repo, {"f.bin": os.urandom(64 << 10)})
    wait_for(lambda: holders(a, repo, head) == NODES, PROMPTLY, "two copies")
    name = b.volume(repo, head)
    assert not b.mount(name, "c1").get("Err")
    a.cli("repo", "delete", repo, "--yes")
    folder = b.pool_root / "repos" / repo
    wait_for(lambda: "deleted elsewhere" in b.log() or folder.exists(), PROMPTLY, "the delete")
    assert folder.exists()  # mounted: kept
    b.unmount(name, "c1")
    wait_for(
        lambda: not folder.exists(),
        PROMPTLY,
        f"node1 to drop {folder} once nothing mounts it (not at the next sweep)",
    )


def test_a_pruned_commit_mounted_here_is_dropped_when_the_mount_ends(two: WatchCluster) -> None:
    """gc on node0 prunes a commit a container on node1 mounts: node1 keeps its copy
    while mounted, and (before the fix) until the next sweep after the mount ended."""
    a, b = two.nodes
    repo = "pruned0"
    a.cli("repo", "create", repo, "--replicas", "2")
    old = a.write_commit(repo, {"f.bin": os.urandom(64 << 10)})
    new = a.write_commit(repo, {"f.bin": os.urandom(64 << 10)})
    for commit in (old, new):
        wait_for(lambda c=commit: holders(a, repo, c) == NODES, PROMPTLY, "two copies")
    name = b.volume(repo, old)
    assert not b.mount(name, "c1").get("Err")
    a.cli("gc", repo, "--keep-last", "1")
    copy = b.pool_root / "repos" / repo / "commits" / old
    wait_for(lambda: "node1" not in holders(a, repo, old), PROMPTLY, "node1 unlisted")
    assert copy.exists()  # mounted: kept
    b.unmount(name, "c1")
    wait_for(
        lambda: not copy.exists(),
        PROMPTLY,
        f"node1 to drop {copy} once nothing mounts it (not at the next sweep)",
    )
