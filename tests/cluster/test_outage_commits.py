"""etcd going away in the middle of a commit, and a node started while etcd is down:
the commit's outcome is settled by start-up recovery (never lost, never doubled), the
write lock comes back to the cluster, and a node that cannot reach etcd refuses to
start instead of serving without its metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import (
    LEASE_TTL,
    Cluster,
    freeze_a_commit,
    wait_for,
)

pytestmark = pytest.mark.xdist_group("timing-etcd")


def test_etcd_down_during_a_commit_keeps_it_for_recovery_and_loses_nothing(
    cluster: Cluster,
) -> None:
    a, b, _c = cluster.nodes
    base = a.write_commit("outage", {"base.txt": b"base\n"})
    # A freezes inside its next commit: snapshot taken and lock checked, head not moved.
    worker, answers = freeze_a_commit(
        a, "outage", "commit.before_finish", "m1", "new.txt", b"written before the outage\n"
    )
    cluster.etcd.stop_all()
    a.resume()
    worker.join(90)
    assert not worker.is_alive()
    [answer] = answers
    assert "etcd" in answer.get("Err", "") or "unreachable" in answer.get("Err", ""), answer
    # The outcome is unknown to node0: the snapshot stays for recovery.
    cluster.etcd.restart_all()
    a.kill()
    a.start()
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 60, "all nodes registered again")
    log = a.cli_json("log", "outage")
    assert [c["id"] for c in log][1:] == [base], log
    assert len(log) == 2, log
    head = log[0]["id"]
    # Docker may repeat the Unmount it got an error for: nothing more is committed.
    assert not a.unmount(a.volume("outage"), "m1").get("Err")
    assert [c["id"] for c in a.cli_json("log", "outage")] == [head, base]
    # Every node reads the new commit whole, and node1 may write once node0 let go.
    files = wait_for(lambda: b.read_commit("outage", head), 30, "node1 to read the commit")
    assert set(files) == {"base.txt", "new.txt"}
    reply = wait_for(
        lambda: (r := b.mount(b.volume("outage"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "node0's write lock to come back",
    )
    assert (Path(reply["Mountpoint"]) / "new.txt").read_bytes() == b"written before the outage\n"
    (Path(reply["Mountpoint"]) / "b.txt").write_bytes(b"b\n")
    assert not b.unmount(b.volume("outage"), "b1").get("Err")
    assert len(b.cli_json("log", "outage")) == 3


def test_etcd_down_during_a_commit_then_back_releases_the_lock_without_a_restart(
    cluster: Cluster,
) -> None:
    """The repair loop (through the daemon's Maintenance) gives back the write lock an
    outage kept, once nothing mounts the branch any more."""
    a, b, _c = cluster.nodes
    a.write_commit("relock", {"base.txt": b"base\n"})
    reply = a.mount(a.volume("relock"), "m1")
    assert not reply.get("Err"), reply
    (Path(reply["Mountpoint"]) / "x").write_bytes(b"x")
    cluster.etcd.stop_all()
    answer = a.unmount(a.volume("relock"), "m1")
    assert answer.get("Err"), answer
    cluster.etcd.restart_all()
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 60, "all nodes registered again")
    # Docker repeats nothing here; the operator (or the reconciler) releases the mount.
    assert not a.unmount(a.volume("relock"), "m1").get("Err")
    log = a.cli_json("log", "relock")
    assert len(log) == 2, log
    reply = wait_for(
        lambda: (r := b.mount(b.volume("relock"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "node0's write lock to be released",
    )
    assert (Path(reply["Mountpoint"]) / "x").read_bytes() == b"x"
    assert not b.unmount(b.volume("relock"), "b1").get("Err")


def test_a_node_started_while_etcd_is_down_waits_then_joins_once_it_is_back(
    cluster: Cluster,
) -> None:
    a, _b, c = cluster.nodes
    head = a.write_commit("late", {"f": b"1"})
    c.stop()
    cluster.etcd.stop_all()
    c.start(ready=False)  # both sockets answer; the node says why it is not ready
    # (A 503 answer is falsy: the text is what is waited for.)
    said = wait_for(
        lambda: "etcd" in (text := c.api("GET", "/v1/health").text) and text,
        60,
        "the node to say it cannot reach etcd",
    )
    assert '"code":"starting"' in said.replace(" ", ""), said
    cluster.etcd.restart_all()
    c.wait_ready()
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 60, "all nodes registered again")
    assert c.read_commit("late", head) == a.read_commit("late", head)


def test_a_commit_cut_off_by_an_outage_loses_to_the_writer_that_took_over(
    cluster: Cluster,
) -> None:
    """node0's commit is cut off by the outage and node0 dies; node1 takes the branch
    and commits. node0's restart undoes its half commit (the head moved), and its
    changes are never lost: the next writable mount there keeps them under detached/."""
    a, b, _c = cluster.nodes
    base = a.write_commit("taken", {"base.txt": b"base\n"})
    worker, answers = freeze_a_commit(
        a, "taken", "commit.before_finish", "m1", "a.txt", b"node0's work\n"
    )
    cluster.etcd.stop_all()
    a.resume()
    worker.join(90)
    assert not worker.is_alive() and answers[0].get("Err"), answers
    cluster.etcd.restart_all()
    a.kill()
    reply = wait_for(
        lambda: (r := b.mount(b.volume("taken"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "node0's write lock to die with its lease",
    )
    (Path(reply["Mountpoint"]) / "b.txt").write_bytes(b"node1's work\n")
    assert not b.unmount(b.volume("taken"), "b1").get("Err")
    won = b.cli_json("commit", "inspect", "taken@master")["id"]

    a.start()
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 60, "all nodes registered again")
    assert [c["id"] for c in a.cli_json("log", "taken")] == [won, base]
    commits = a.pool_root / "repos" / "taken" / "commits"
    assert {p.name for p in commits.iterdir()} <= {won, base}  # the half commit is gone
    a.unmount(a.volume("taken"), "m1")  # Docker's repeat: nothing is committed
    assert [c["id"] for c in a.cli_json("log", "taken")] == [won, base]
    reply = wait_for(
        lambda: (r := a.mount(a.volume("taken"), "a2")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "node0 to write again",
    )
    root = Path(reply["Mountpoint"])
    assert (root / "b.txt").read_bytes() == b"node1's work\n"
    assert not (root / "a.txt").exists()
    assert not a.unmount(a.volume("taken"), "a2").get("Err")
    kept = list((a.pool_root / "repos" / "taken" / "detached").glob("master.*/a.txt"))
    assert [p.read_bytes() for p in kept] == [b"node0's work\n"]


def test_a_node_down_during_a_gc_and_a_repo_delete_catches_up_when_it_returns(
    cluster: Cluster,
) -> None:
    """Repair, through the maintenance the daemon hands the cluster, drops the copies
    gc pruned and purges the repos deleted while the node was away."""
    a, b, c = cluster.nodes
    old = a.write_commit("gone", {"old.bin": b"o" * 4096})
    new = a.write_commit("gone", {"new.bin": b"n" * 4096})
    kept_old = a.write_commit("kept", {"k.bin": b"k" * 4096})
    a.write_commit("kept", {"k2.bin": b"2" * 4096})
    for node in (b, c):
        node.read_commit("gone", old)
        node.read_commit("kept", kept_old)
    c.write_commit("gone", {"from_c.txt": b"c\n"})  # C has a working copy of gone
    c.kill()
    a.cli("gc", "kept", "--keep-last", "1")
    a.cli("repo", "delete", "gone", "--yes")
    assert (c.pool_root / "repos" / "kept" / "commits" / kept_old).exists()
    c.start()
    wait_for(
        lambda: not (c.pool_root / "repos" / "gone").exists(),
        60,
        "node2 to purge the repo deleted while it was away",
    )
    wait_for(
        lambda: not (c.pool_root / "repos" / "kept" / "commits" / kept_old).exists(),
        60,
        "node2 to drop its copy of the pruned commit",
    )
    retired = list((c.pool_root / "retired").iterdir())
    assert [p.name.split(".")[0] for p in retired] == ["gone"]
    kept = list(retired[0].glob("branches/master/from_c.txt"))
    assert [p.read_bytes() for p in kept] == [b"c\n"], "a working copy is never deleted"
    assert new not in {p.name for p in (a.pool_root / "repos").glob("*/commits/*")}


def test_a_lock_whose_release_met_an_outage_is_given_back_by_repair(cluster: Cluster) -> None:
    """The commit landed, then etcd went away before node0 gave the branch's write lock
    back: no Unmount or restart comes to release it, node0 stays up, and the repair loop
    (the daemon's Maintenance handed to the cluster) gives it back once etcd returns."""
    a, b, _c = cluster.nodes
    base = a.write_commit("held", {"base.txt": b"base\n"})
    worker, answers = freeze_a_commit(a, "held", "commit.after_finish", "m1", "x.txt", b"x\n")
    cluster.etcd.stop_all()
    a.resume()
    worker.join(90)
    assert not worker.is_alive()
    cluster.etcd.restart_all()
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 60, "all nodes registered again")
    log = a.cli_json("log", "held")
    assert len(log) == 2 and log[1]["id"] == base, (log, answers)
    assert a.cli_json("repo", "inspect", "held")["mounts"] == []
    reply = wait_for(
        lambda: (r := b.mount(b.volume("held"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "repair on node0 to give the write lock back",
    )
    assert (Path(reply["Mountpoint"]) / "x.txt").read_bytes() == b"x\n"
    assert not b.unmount(b.volume("held"), "b1").get("Err")
    assert a.process is not None and a.process.poll() is None, "node0 never restarted"
    assert "write lock not released yet" in a.log(), "the release did meet the outage"


def test_an_unmount_repeated_after_an_outage_commits_once_and_the_leftover_goes_at_restart(
    cluster: Cluster,
) -> None:
    """etcd goes away between node0's intent and its snapshot; once it is back, Docker's
    repeated Unmount commits the changes (once), and the next start-up removes the
    half commit the outage left (its snapshot and intent), touching nothing else."""
    a, b, _c = cluster.nodes
    base = a.write_commit("again", {"base.txt": b"base\n"})
    worker, answers = freeze_a_commit(a, "again", "commit.after_intent", "m1", "n.txt", b"n\n")
    cluster.etcd.stop_all()
    a.resume()
    worker.join(90)
    assert not worker.is_alive() and answers[0].get("Err"), answers
    cluster.etcd.restart_all()
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 60, "all nodes registered again")
    assert not a.unmount(a.volume("again"), "m1").get("Err")  # Docker's repeat
    log = a.cli_json("log", "again")
    assert [c["id"] for c in log][1:] == [base] and len(log) == 2, log
    head = log[0]["id"]
    a.stop()
    a.start()
    assert [c["id"] for c in a.cli_json("log", "again")] == [head, base]
    commits = a.pool_root / "repos" / "again" / "commits"
    assert {p.name for p in commits.iterdir()} == {head, base}
    assert set(b.read_commit("again", head)) == {"base.txt", "n.txt"}
    reply = wait_for(
        lambda: (r := b.mount(b.volume("again"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "node0 to give the write lock back",
    )
    assert (Path(reply["Mountpoint"]) / "n.txt").read_bytes() == b"n\n"
    assert not b.unmount(b.volume("again"), "b1").get("Err")
