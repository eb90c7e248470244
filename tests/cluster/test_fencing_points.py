"""A writer frozen past its lease after its snapshot (test_locks.py freezes one before
its finish): when it wakes, the writer that took over has won, the frozen commit fails
and is undone, its changes stay in its working copy (kept aside by its next writable
mount), and both nodes go on writing the branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import (
    LEASE_TTL,
    Cluster,
    ClusterNode,
    freeze_a_commit,
    wait_for,
)

pytestmark = pytest.mark.xdist_group("timing-etcd")


# One point: these tests run one after another, about 10 s each.
@pytest.mark.parametrize("point", ["commit.after_snapshot"])
def test_a_writer_frozen_past_its_lease_loses_and_keeps_its_changes(
    cluster: Cluster, point: str
) -> None:
    a, b, _c = cluster.nodes
    base = a.write_commit("frozen", {"base.txt": b"base\n"})
    worker, answers = freeze_a_commit(a, "frozen", point, "a1", "from_a.txt", b"stale writer\n")
    wait_for(
        lambda: "node0" not in [n["id"] for n in b.cli_json("node", "list")],
        LEASE_TTL + 15,
        "node0's lease to expire",
    )
    reply = wait_for(
        lambda: (r := b.mount(b.volume("frozen"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 15,
        "node1 to take the branch",
    )
    (Path(reply["Mountpoint"]) / "from_b.txt").write_bytes(b"new holder\n")
    assert not b.unmount(b.volume("frozen"), "b1").get("Err")
    b_head = b.cli_json("commit", "inspect", "frozen@master")["id"]
    a.resume()
    worker.join(timeout=90)
    assert not worker.is_alive()
    assert answers[0].get("Err"), answers
    # The head is node1's commit; node0's half commit left no snapshot.
    wait_for(lambda: "node0" in [n["id"] for n in b.cli_json("node", "list")], 30, "node0 back")
    assert a.cli_json("commit", "inspect", "frozen@master")["id"] == b_head
    assert [c["id"] for c in a.cli_json("log", "frozen")] == [b_head, base]
    commits = a.pool_root / "repos" / "frozen" / "commits"
    assert {p.name for p in commits.iterdir()} <= {b_head, base}
    assert a.cli_json("repo", "inspect", "frozen")["mounts"] == []
    # What the user is told: the failed commit and the changes it left uncommitted.
    state = branch_state(a, "frozen")
    assert state["last_commit_error"]["mount"] == "a1", state
    assert state["uncommitted_changes"] is True, state
    status = a.plugin("VolumeDriver.Get", {"Name": a.volume("frozen")})["Volume"]["Status"]
    assert status["last_commit_error"]["mount"] == "a1", status
    # A restart of node0 finds nothing left to settle from the frozen commit.
    a.stop()
    a.start()
    assert [c["id"] for c in a.cli_json("log", "frozen")] == [b_head, base]
    # node0 writes again: its stale changes are kept aside, never lost nor committed.
    reply = wait_for(
        lambda: (r := a.mount(a.volume("frozen"), "a2")) and not r.get("Err") and r,
        LEASE_TTL + 15,
        "node0 to take the branch again",
    )
    root = Path(reply["Mountpoint"])
    assert (root / "from_b.txt").read_bytes() == b"new holder\n"
    assert not (root / "from_a.txt").exists()
    (root / "again.txt").write_bytes(b"again\n")
    assert not a.unmount(a.volume("frozen"), "a2").get("Err")
    assert len(a.cli_json("log", "frozen")) == 3
    assert branch_state(a, "frozen")["last_commit_error"] is None
    kept = list((a.pool_root / "repos" / "frozen" / "detached").glob("master.*/from_a.txt"))
    assert [p.read_bytes() for p in kept] == [b"stale writer\n"]


def branch_state(node: ClusterNode, repo: str, branch: str = "master") -> dict[str, Any]:
    [state] = [b for b in node.api("GET", f"/v1/repos/{repo}").json()["branches"]]
    assert state["name"] == branch
    return dict(state)
