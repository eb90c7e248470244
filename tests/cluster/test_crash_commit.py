"""kill -9 at failpoints of the commit path on a cluster node (the etcd store, its
fenced finish and a write lock bound to the dead process's lease), then a restart at
once, well inside that lease: exactly one whole commit, readable on another node, the
lock taken over by the new process and given back, nothing lost."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests

from tests.cluster.conftest import LEASE_TTL, Cluster, wait_for

pytestmark = pytest.mark.xdist_group("timing-etcd")

# tests/integration/test_crash.py kills at every point of the commit path; here, where
# the dead process's lease still holds the lock: over a snapshot without its record, and
# after the record (these tests run one after another: each point costs the suite ~8 s).
POINTS = ["commit.after_snapshot", "commit.after_finish"]


@pytest.mark.parametrize("point", POINTS)
def test_a_cluster_node_killed_mid_commit_restarts_with_one_whole_commit(
    cluster: Cluster, point: str
) -> None:
    a, b, _c = cluster.nodes
    base = a.write_commit("crashy", {"a.txt": b"first\n"})
    a.stop()
    a.start(env={"PFS_FAILPOINTS": point})
    reply = a.mount(a.volume("crashy"), "m1")
    assert not reply.get("Err"), reply
    root = Path(reply["Mountpoint"])
    (root / "b.txt").write_bytes(b"second\n")
    (root / "a.txt").unlink()
    died: list[BaseException] = []

    def unmount() -> None:
        try:
            a.unmount(a.volume("crashy"), "m1")
        except requests.RequestException as exc:
            died.append(exc)

    worker = threading.Thread(target=unmount, daemon=True)
    worker.start()
    assert a.wait_exit() == 137  # the failpoint was reached
    worker.join(30)
    assert died, "the Unmount got an answer from a daemon that died before it"

    a.start()  # at once: the dead process's lease (and lock) still lives
    log = a.cli_json("log", "crashy")
    assert [c["id"] for c in log][1:] == [base] and len(log) == 2, log
    head = log[0]["id"]
    assert a.cli_json("repo", "inspect", "crashy")["mounts"] == []
    assert not a.unmount(a.volume("crashy"), "m1").get("Err")  # Docker's repeat
    assert [c["id"] for c in a.cli_json("log", "crashy")] == [head, base]
    snapshots = a.pool_root / "repos" / "crashy" / "commits"
    assert {p.name for p in snapshots.iterdir()} == {head, base}
    files = wait_for(lambda: b.read_commit("crashy", head), 30, "node1 to read the commit")
    assert set(files) == {"b.txt"}
    reply = wait_for(
        lambda: (r := b.mount(b.volume("crashy"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "node0 to give the write lock back",
    )
    assert (Path(reply["Mountpoint"]) / "b.txt").read_bytes() == b"second\n"
    assert not b.unmount(b.volume("crashy"), "b1").get("Err")
