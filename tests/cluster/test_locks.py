"""One writer per branch in the whole cluster: contention, locks that die with their
node's lease, and fencing of a writer that was paused past its lease."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import LEASE_TTL, Cluster, wait_for

# Lease expiry and fencing bounds are timing: run on one xdist worker, one after another
# with the other etcd timing tests.
pytestmark = pytest.mark.xdist_group("timing-etcd")


def test_second_writer_on_another_node_is_refused_naming_the_holder(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    a.write_commit("shared", {"x": b"1"})
    reply = a.mount(a.volume("shared"), "a1")
    assert not reply.get("Err"), reply
    refused = b.mount(b.volume("shared"), "b1")
    assert "node0" in refused["Err"] and "one writer" in refused["Err"], refused
    # Readers are fine, and so is another branch.
    head = a.cli_json("commit", "inspect", "shared@master")["id"]
    assert b.read_commit("shared", head) == {"x": b.read_commit("shared", head)["x"]}
    other = b.mount(f"{b.driver_name}/shared/side", "b2")
    assert not other.get("Err"), other
    b.unmount(f"{b.driver_name}/shared/side", "b2")
    # Once A's last container goes, B may write.
    assert not a.unmount(a.volume("shared"), "a1").get("Err")
    reply = b.mount(b.volume("shared"), "b3")
    assert not reply.get("Err"), reply
    b.unmount(b.volume("shared"), "b3")


def test_lock_is_freed_when_the_holders_lease_expires(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    a.write_commit("locked", {"x": b"1"})
    assert not a.mount(a.volume("locked"), "a1").get("Err")
    a.kill()
    started = time.monotonic()
    reply = wait_for(
        lambda: (r := b.mount(b.volume("locked"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 10,
        "the lock to die with node0's lease",
    )
    assert time.monotonic() - started <= LEASE_TTL + 10
    (Path(reply["Mountpoint"]) / "y").write_bytes(b"2")
    assert not b.unmount(b.volume("locked"), "b1").get("Err")
    assert b.cli_json("commit", "inspect", "locked@master")["id"]


def test_paused_writer_is_fenced_and_the_new_holders_commits_survive(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    base = a.write_commit("fenced", {"base.txt": b"base\n"})
    # A freezes itself inside its next commit: after the snapshot, before the head move.
    a.stop()
    a.env["PFS_FAILPOINTS"] = "commit.before_finish=stop"
    a.start()
    reply = a.mount(a.volume("fenced"), "a1")
    assert not reply.get("Err"), reply
    (Path(reply["Mountpoint"]) / "from_a.txt").write_bytes(b"stale writer\n")
    outcome: dict[str, Any] = {}

    def unmount_on_a() -> None:
        outcome["reply"] = a.unmount(a.volume("fenced"), "a1")

    worker = threading.Thread(target=unmount_on_a)
    worker.start()
    wait_for(lambda: _is_stopped(a.process.pid), 30, "node0 to freeze in its commit")
    # Wait until A is out of the member list, so B never asks the frozen A for data.
    wait_for(
        lambda: "node0" not in [n["id"] for n in b.cli_json("node", "list")],
        LEASE_TTL + 15,
        "node0's lease to expire",
    )
    # Past A's lease, B takes the lock and commits.
    reply = wait_for(
        lambda: (r := b.mount(b.volume("fenced"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 15,
        "node0's lease to expire",
    )
    (Path(reply["Mountpoint"]) / "from_b.txt").write_bytes(b"new holder\n")
    assert not b.unmount(b.volume("fenced"), "b1").get("Err")
    b_head = b.cli_json("commit", "inspect", "fenced@master")["id"]
    assert b_head != base
    a.resume()
    worker.join(timeout=60)
    assert "fenced" in outcome["reply"].get("Err", "") or "lock" in outcome["reply"].get(
        "Err", ""
    ), outcome
    # The head is B's commit, its data intact; A's snapshot is gone.
    assert a.cli_json("commit", "inspect", "fenced@master")["id"] == b_head
    files = a.read_commit("fenced", b_head)
    assert set(files) == {"base.txt", "from_b.txt"}
    commits = a.pool_root / "repos" / "fenced" / "commits"
    known = {entry["id"] for entry in a.cli_json("log", "fenced")}
    assert {p.name for p in commits.iterdir()} <= known
    a.env.pop("PFS_FAILPOINTS")


def _is_stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def test_a_restarted_writer_keeps_its_lock_for_containers_still_mounted(
    cluster: Cluster,
) -> None:
    a, b, _c = cluster.nodes
    a.write_commit("kept", {"x": b"1"})
    reply = a.mount(a.volume("kept"), "a1")
    assert not reply.get("Err"), reply
    a.stop()  # a graceful restart while a container still has the branch mounted
    a.start()
    time.sleep(LEASE_TTL + 1)  # past the old lease: the lock must not have gone with it
    refused = b.mount(b.volume("kept"), "b1")
    assert "node0" in refused.get("Err", ""), refused
    (Path(reply["Mountpoint"]) / "y").write_bytes(b"2")
    assert not a.unmount(a.volume("kept"), "a1").get("Err")
    head = a.cli_json("commit", "inspect", "kept@master")["id"]
    assert set(b.read_commit("kept", head)) == {"x", "y"}
