"""Docker's List on a cluster node: a volume's mountpoint follows what other nodes do
(a commit made elsewhere, a copy fetched here, the repo deleted elsewhere), and is always
what Get says of the same name."""

from __future__ import annotations

from pfs_volume.cluster import placement
from tests.cluster.conftest import LEASE_TTL, Cluster, ClusterNode, wait_for

PURGE_WAIT = LEASE_TTL + 20.0


def listed(node: ClusterNode) -> dict[str, str]:
    """The node's List as name -> mountpoint, checked against its Get of every name."""
    answer = {v["Name"]: v["Mountpoint"] for v in node.plugin("VolumeDriver.List")["Volumes"]}
    for name, mountpoint in answer.items():
        assert node.plugin("VolumeDriver.Get", {"Name": name})["Volume"]["Mountpoint"] == mountpoint
    return answer


def test_list_follows_commits_fetches_and_deletes_on_other_nodes(cluster: Cluster) -> None:
    repo = "listed"
    replicas = placement.choose(repo, [n.node_id for n in cluster.nodes], 2)
    writer = next(n for n in cluster.nodes if n.node_id in replicas)
    outsider = next(n for n in cluster.nodes if n.node_id not in replicas)
    first = writer.write_commit(repo, {"a.txt": b"1\n"})
    latest, pinned = outsider.volume(repo, "master~0"), outsider.volume(repo, first)
    for name in (latest, pinned):  # each fetches the commit here
        assert not outsider.plugin("VolumeDriver.Create", {"Name": name}).get("Err")
    commits = outsider.pool_root / "repos" / repo / "commits"
    assert listed(outsider) == {latest: str(commits / first), pinned: str(commits / first)}

    # A commit made on another node: master~0 names it, which this node lacks yet.
    second = writer.write_commit(repo, {"a.txt": b"2\n"})
    assert listed(outsider) == {latest: "", pinned: str(commits / first)}
    outsider.read_commit(repo, second)  # fetched (and its name remembered)
    assert listed(outsider) == {
        latest: str(commits / second),
        pinned: str(commits / first),
        outsider.volume(repo, second): str(commits / second),
    }

    # The repo deleted on another node: the names mean nothing here any more.
    writer.cli("repo", "delete", repo, "--yes")
    wait_for(
        lambda: all(m == "" for m in listed(outsider).values()),
        PURGE_WAIT,
        "the outsider's List to show no mountpoint",
    )
