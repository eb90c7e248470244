"""A put killed (kill -9) on a cluster node before its commit, restarted at once while
the dead process's lease and lock still live: start-up commits the put once (through
the etcd store and the taken-over lock), another node reads it, and the lock comes back."""

from __future__ import annotations

import pytest
import requests
import requests_unixsocket

from tests.cluster.conftest import LEASE_TTL, Cluster, ClusterNode, wait_for

pytestmark = pytest.mark.xdist_group("timing-etcd")


def put(node: ClusterNode, path: str, data: bytes) -> requests.Response:
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F")
    return requests_unixsocket.Session().put(
        url + "/v1/repos/r/branches/master/files", params={"path": path}, data=data, timeout=60
    )


def test_a_put_killed_before_its_commit_is_committed_once_at_start_up(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    a.cli("repo", "create", "r")
    assert put(a, "docs/a.txt", b"alpha").status_code == 200
    [head] = a.cli_json("log", "r")
    a.stop()
    a.start(env={"PFS_FAILPOINTS": "put.before_commit"})
    with pytest.raises(requests.ConnectionError):
        put(a, "docs/b.txt", b"landed")
    assert a.wait_exit() == 137  # the failpoint was reached

    a.start()
    log = a.cli_json("log", "r")
    assert [c["id"] for c in log[1:]] == [head["id"]], log
    assert log[0]["origin"] == "put"
    files = wait_for(lambda: b.read_commit("r", log[0]["id"]), 30, "node1 to read the put")
    assert set(files) == {"docs/a.txt", "docs/b.txt"}
    reply = wait_for(
        lambda: (r := b.mount(b.volume("r"), "b1")) and not r.get("Err") and r,
        LEASE_TTL + 30,
        "node0 to give the write lock back",
    )
    assert reply["Mountpoint"]
    assert not b.unmount(b.volume("r"), "b1").get("Err")
    assert len(a.cli_json("log", "r")) == 2
