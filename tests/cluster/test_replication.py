"""Commits move between nodes: readable everywhere, replicated to the repo's replicas,
fetched incrementally, repaired after a node is lost, never half-received."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess

import pytest
import requests

from pfs_volume.cluster import placement
from pfs_volume.failpoints import KILLED_EXIT
from tests.cluster.conftest import LEASE_TTL, Cluster, holders, repo_placed_on, wait_for

REPAIR_WAIT = LEASE_TTL + 20.0


def test_node_list_shows_every_live_node(cluster: Cluster) -> None:
    a = cluster.nodes[0]
    nodes = a.cli_json("node", "list")
    assert [n["id"] for n in nodes] == ["node0", "node1", "node2"]
    assert all(n["state"] == "up" and n["free_bytes"] > 0 for n in nodes)
    assert [n["address"] for n in nodes] == [n.address for n in cluster.nodes]
    text = a.cli("node", "list").stdout
    assert "node1" in text and "127.0.0.3" in text


def test_commit_on_one_node_is_readable_on_the_others(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    first = a.write_commit("photos", {"one.txt": b"one\n", "big.bin": os.urandom(3 << 20)})
    second = a.write_commit("photos", {"two.txt": b"two\n"})
    expected_first = a.read_commit("photos", first)
    expected_second = a.read_commit("photos", second)
    assert b.read_commit("photos", first) == expected_first
    assert c.read_commit("photos", second) == expected_second
    assert c.read_commit("photos", first) == expected_first
    # The repo's placement names two nodes; each commit reaches both.
    placement = a.cli_json("repo", "inspect", "photos")["placement"]
    assert len(placement) == 2
    for commit in (first, second):
        wait_for(
            lambda commit=commit: set(placement) <= set(holders(a, "photos", commit)),
            REPAIR_WAIT,
            f"commit {commit} on its replicas {placement}",
        )
    info = b.cli_json("commit", "inspect", f"photos@{second}")
    assert info["copies"] >= 2 and info["copies"] == len(info["holders"])
    # Fetching the second commit where the first is present went incremental.
    assert "incremental on " + first in c.log()


def test_writable_mount_on_a_new_node_brings_the_head(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    a.write_commit("docs", {"a.txt": b"from a\n"})
    head = b.write_commit("docs", {"b.txt": b"from b\n"})
    files = a.read_commit("docs", head)
    assert set(files) == {"a.txt", "b.txt"}
    # Back on A, whose working copy is stale now: it follows the head, not its old copy.
    head2 = a.write_commit("docs", {"c.txt": b"from a again\n"})
    assert set(b.read_commit("docs", head2)) == {"a.txt", "b.txt", "c.txt"}
    log = a.cli_json("log", "docs")
    assert [entry["id"] for entry in log][:2] == [head2, head]


def test_killed_node_loses_no_replicated_commit_and_repair_restores_copies(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.nodes
    commits = []
    for index in range(3):
        commits.append(a.write_commit("data", {f"f{index}.bin": os.urandom(256 << 10)}))
    digests = {commit: a.read_commit("data", commit) for commit in commits}
    for commit in commits:
        wait_for(
            lambda commit=commit: len(holders(a, "data", commit)) >= 2, REPAIR_WAIT, "2 copies"
        )
    a.kill()
    a.cleanup()  # and detach its pool: its copies are gone for good
    for node in (b, c):
        for commit in commits:
            assert node.read_commit("data", commit) == digests[commit]

    def repaired() -> bool:
        info = b.cli_json("repo", "inspect", "data")
        live_holders = [len(set(holders(b, "data", commit)) - {"node0"}) for commit in commits]
        return "node0" not in info["placement"] and min(live_holders) >= 2

    wait_for(repaired, REPAIR_WAIT, "repair to 2 live copies without node0")
    assert {n["id"] for n in b.cli_json("node", "list")} == {"node1", "node2"}
    for commit in commits:
        info = b.cli_json("commit", "inspect", f"data@{commit}")
        assert "node0" not in info["holders"] and info["dead_holders"] == ["node0"], info
        assert info["copies"] == len(info["holders"]) >= 2, info


def test_sender_killed_mid_transfer_leaves_no_partial_copy(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    big = _placed_on_node0_then_node1("big")
    a.cli("repo", "create", big, "--replicas", "1")
    commit = a.write_commit(big, {"blob.bin": os.urandom(24 << 20)})
    digest = a.read_commit(big, commit)
    a.stop()
    a.env["PFS_FAILPOINTS"] = "send.mid_stream"
    try:
        a.start()
    except RuntimeError:
        # While a was down, b's repair took the copy over (the name is placed so); its
        # fetch can reach a before a's API answers, and a dies at the failpoint then:
        # the same transfer cut under b, by b's repair rather than by b's mount.
        assert a.process is not None and a.process.returncode == KILLED_EXIT, a.log()
    reply = b.mount(b.volume(big, commit), "m-partial")
    assert "could not be fetched" in reply["Err"], reply
    assert not (b.pool_root / "repos" / big / "commits" / commit).exists()
    assert "node1" not in holders(b, big, commit)
    a.wait_exit(timeout=30)
    a.env.pop("PFS_FAILPOINTS")
    a.start()
    assert b.read_commit(big, commit) == digest


def _placed_on_node0_then_node1(stem: str) -> str:
    """A repo name placed (one replica) on node0, and on node1 while node0 is away."""
    for index in range(100):
        name = f"{stem}{index}"
        if placement.choose(name, ["node0", "node1", "node2"], 1) == ("node0",) and (
            placement.choose(name, ["node1", "node2"], 1) == ("node1",)
        ):
            return name
    raise AssertionError("no such name")


@pytest.mark.parametrize("point", ["fetch.mid_stream", "fetch.after_receive"])
def test_receiver_killed_mid_transfer_leaves_no_partial_copy(cluster: Cluster, point: str) -> None:
    """Killed mid-stream (a writable partial copy) or after the receive but before the
    copy was recorded (a whole read-only one nobody accepted): start-up finds either by
    the receive's marker and deletes it."""
    a, b, _c = cluster.nodes
    big = repo_placed_on("node0", "big")
    a.cli("repo", "create", big, "--replicas", "1")
    commit = a.write_commit(big, {"blob.bin": os.urandom(24 << 20)})
    digest = a.read_commit(big, commit)
    b.stop()
    b.env["PFS_FAILPOINTS"] = point
    b.start()
    mount_id = secrets.token_hex(4)
    # The node dies under the request, as intended.
    with contextlib.suppress(requests.RequestException):
        b.mount(b.volume(big, commit), mount_id)
    assert b.wait_exit(timeout=30) == 137  # the failpoint was reached
    b.env.pop("PFS_FAILPOINTS")
    b.start()
    snapshot = b.pool_root / "repos" / big / "commits" / commit
    assert "node1" not in holders(b, big, commit)
    assert not snapshot.exists(), "a partial receive survived the restart"
    assert not list((b.pool_root / "receiving").iterdir()), "the marker is settled"
    assert b.read_commit(big, commit) == digest
    assert "node1" in holders(b, big, commit)


def test_gc_and_repo_delete_reach_every_node(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    old = a.write_commit("tidy", {"old.bin": os.urandom(64 << 10)})
    new = a.write_commit("tidy", {"new.bin": os.urandom(64 << 10)})
    for node in (b, c):
        node.read_commit("tidy", old)  # every node has a copy now
    a.cli("gc", "tidy", "--keep-last", "1")

    def copies_gone() -> bool:
        return all(
            not (n.pool_root / "repos" / "tidy" / "commits" / old).exists() for n in (a, b, c)
        )

    wait_for(copies_gone, REPAIR_WAIT, "every node to drop its copy of the pruned commit")
    wait_for(lambda: holders(a, "tidy", old) == [], REPAIR_WAIT, "no holder of the pruned commit")
    assert b.read_commit("tidy", new)
    b.write_commit("tidy", {"from_b.txt": b"b\n"})  # B has a working copy now
    # A folder no record explains is not evidence of a deletion: it stays.
    (c.pool_root / "repos" / "stranger" / "commits").mkdir(parents=True)
    a.cli("repo", "delete", "tidy", "--yes")
    wait_for(
        lambda: all(not (n.pool_root / "repos" / "tidy").exists() for n in (a, b, c)),
        REPAIR_WAIT,
        "every node to remove the repo's data",
    )
    retired = list((b.pool_root / "retired").iterdir())
    assert [p.name.split(".")[0] for p in retired] == ["tidy"]
    assert (retired[0] / "branches" / "master").is_dir(), "working copies are kept"
    assert not (retired[0] / "commits").exists()
    assert (c.pool_root / "repos" / "stranger").is_dir()


def test_node_api_refuses_requests_without_the_cluster_token(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    commit = a.write_commit("secret", {"s": b"s"})
    url = f"{a.address}/v1/peer/repos/secret/commits/{commit}/stream"
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        refused = requests.get(url, headers=headers, timeout=10)
        assert refused.status_code == 401
        assert "cluster token" in refused.json()["error"]["message"]
    good = {"Authorization": f"Bearer {cluster.token}"}
    assert requests.get(url, headers=good, timeout=10).status_code == 200
    bad_id = requests.get(url.replace(commit, "xyz"), headers=good, timeout=10)
    assert bad_id.status_code == 400 and "commit id" in bad_id.json()["error"]["message"]
    fetch = f"{b.address}/v1/peer/repos/secret/commits/{commit}/fetch"
    wrong = requests.post(fetch, json={"from": 1}, headers=good, timeout=10)
    assert wrong.status_code == 400 and '"from": str' in wrong.json()["error"]["message"]


def test_a_copy_this_node_is_not_listed_as_holding_is_never_served(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    solo = repo_placed_on("node0", "solo")
    a.cli("repo", "create", solo, "--replicas", "1")
    commit = a.write_commit(solo, {"f.txt": b"real"})
    digest = a.read_commit(solo, commit)
    # A read-only copy on node1 that no record lists (as a receive cut short at a clean
    # point of its stream leaves one), with other content, to tell it apart.
    forged = b.pool_root / "repos" / solo / "commits" / commit
    forged.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["btrfs", "subvolume", "create", str(forged)], check=True, capture_output=True)
    (forged / "f.txt").write_text("forged")
    subprocess.run(
        ["btrfs", "property", "set", "-ts", str(forged), "ro", "true"],
        check=True,
        capture_output=True,
    )
    assert "node1" not in holders(b, solo, commit)
    read = b.cli("cat", f"{solo}@{commit}", "f.txt", check=False)
    assert "forged" not in read.stdout
    sent = requests.get(
        f"{b.address}/v1/peer/repos/{solo}/commits/{commit}/stream",
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=30,
    )
    assert sent.status_code == 404 and b"forged" not in sent.content
    assert b.read_commit(solo, commit) == digest  # fetched whole from node0 instead
    assert "node1" in holders(b, solo, commit)
