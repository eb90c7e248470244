"""Fixtures for cluster tests: a real 3-member etcd cluster and three real pfs nodes on
loopback addresses (127.0.0.2-4), each with its own pool image, state dir, node API
port and driver name. Nodes are driven through the plugin protocol as Docker drives
them and through the CLI; no Docker engine is needed for these tests.

When a test fails, the tails of the node logs are attached to the report.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from pfs_volume.cluster import placement
from pfs_volume.meta import EtcdClient, EtcdStore
from pfs_volume.meta.etcd_keys import repo_json
from tests.etcd_cluster import EtcdCluster, free_port
from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

LEASE_TTL = 3
"""Seconds: short, so that lease expiry tests take seconds, not minutes."""


class ClusterNode(PfsNode):
    """A pfs node of the test cluster, with its id and node API address."""

    def __init__(self, state_dir: Path, node_id: str, host: str, etcd: list[str], token: str):
        self.node_id = node_id
        self.address = f"http://{host}:{free_port(host)}"
        super().__init__(
            state_dir,
            pool_size="1G",
            plugin_dir=PRIVATE_PLUGIN_DIR,
            args=[
                "--etcd",
                ",".join(etcd),
                "--node-id",
                node_id,
                "--advertise",
                self.address,
                "--cluster-token",
                token,
                "--lease-ttl",
                str(LEASE_TTL),
                "--replicas",
                "2",
            ],
        )

    def volume(self, repo: str, ref: str | None = None) -> str:
        """A volume name of this node's driver."""
        return f"{self.driver_name}/{repo}" + (f"@{ref}" if ref else "")

    def mount(self, name: str, mount_id: str) -> dict[str, Any]:
        """Docker's Mount of ``name``; the plugin's reply (``Mountpoint`` or ``Err``)."""
        reply: dict[str, Any] = self.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})
        return reply

    def unmount(self, name: str, mount_id: str) -> dict[str, Any]:
        """Docker's Unmount; the plugin's reply."""
        reply: dict[str, Any] = self.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})
        return reply

    def write_commit(self, repo: str, files: dict[str, bytes], branch: str = "master") -> str:
        """Mount the branch, write ``files``, unmount (which commits); the new head."""
        name = f"{self.driver_name}/{repo}/{branch}"
        mount_id = secrets.token_hex(8)
        reply = self.mount(name, mount_id)
        assert not reply.get("Err"), reply
        root = Path(reply["Mountpoint"])
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        reply = self.unmount(name, mount_id)
        assert not reply.get("Err"), reply
        head: str = self.cli_json("commit", "inspect", f"{repo}@{branch}")["id"]
        return head

    def read_commit(self, repo: str, commit: str) -> dict[str, str]:
        """Mount ``repo@commit`` read-only here (fetching it if needed); path -> sha256."""
        name = self.volume(repo, commit)
        mount_id = secrets.token_hex(8)
        reply = self.mount(name, mount_id)
        assert not reply.get("Err"), reply
        try:
            return tree_digest(Path(reply["Mountpoint"]))
        finally:
            self.unmount(name, mount_id)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with the sha256 of its bytes."""
    digests = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


class Cluster:
    """Three etcd members and three pfs nodes."""

    def __init__(self, tmp_path: Path) -> None:
        self.etcd = EtcdCluster(tmp_path / "etcd", members=3)
        self.token = secrets.token_hex(16)
        self.tmp_path = tmp_path
        self.nodes: list[ClusterNode] = []

    def start(self) -> Cluster:
        self.etcd.start()
        for index in range(3):
            node = ClusterNode(
                self.tmp_path / f"node{index}",
                f"node{index}",
                f"127.0.0.{index + 2}",
                self.etcd.endpoints,
                self.token,
            )
            self.nodes.append(node)
            node.start()
        return self

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
        self.etcd.cleanup()


@pytest.fixture
def cluster(tmp_path: Path, attach_log: Callable[[str, Path], None]) -> Iterator[Cluster]:
    """A fresh 3-member etcd cluster and three pfs nodes, torn down afterwards."""
    made = Cluster(tmp_path)
    for index in range(3):
        attach_log(f"node{index} log", tmp_path / f"node{index}" / "daemon.log")
    try:
        yield made.start()
    finally:
        made.cleanup()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; that value. Fails after
    ``timeout`` seconds, saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def repo_placed_on(node_id: str, stem: str) -> str:
    """A repo name whose single replica (``--replicas 1``) rendezvous puts on ``node_id``,
    so no other node gets a copy unless it asks."""
    for index in range(100):
        name = f"{stem}{index}"
        if placement.choose(name, ["node0", "node1", "node2"], 1) == (node_id,):
            return name
    raise AssertionError("no such name")


def holders(node, repo: str, commit: str) -> list[str]:
    return node.cli_json("commit", "inspect", f"{repo}@{commit}")["holders"]


def unmount_in_background(
    node: ClusterNode, repo: str, mount_id: str
) -> tuple[threading.Thread, list[dict[str, str]]]:
    """Docker's Unmount of ``repo``'s volume on another thread, for a commit the test
    freezes or cuts off midway. Returns the thread and the list its answer lands in
    (``{"Err": "transport: ..."}`` when the connection broke)."""
    answers: list[dict[str, str]] = []

    def unmount() -> None:
        try:
            answers.append(node.unmount(node.volume(repo), mount_id))
        except requests.RequestException as exc:
            answers.append({"Err": f"transport: {exc}"})

    worker = threading.Thread(target=unmount, daemon=True)
    worker.start()
    return worker, answers


def freeze_a_commit(
    node: ClusterNode, repo: str, point: str, mount_id: str, name: str, data: bytes
) -> tuple[threading.Thread, list[dict[str, str]]]:
    """Restart ``node`` with failpoint ``point`` set to stop, mount ``repo``, write
    ``name`` into its working copy and start the Unmount that commits it; return once the
    node is frozen at ``point`` (``unmount_in_background``'s thread and answers)."""
    node.stop()
    node.start(env={"PFS_FAILPOINTS": f"{point}=stop"})
    reply = node.mount(node.volume(repo), mount_id)
    assert not reply.get("Err"), reply
    (Path(reply["Mountpoint"]) / name).write_bytes(data)
    worker, answers = unmount_in_background(node, repo, mount_id)
    wait_for(node.is_stopped, 30, f"{node.node_id} to stop at {point}")
    return worker, answers


class WatchCluster:
    """Nodes named ``names`` over a one-member etcd, each sweeping once an hour: what
    they do sooner, the watch did."""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.etcd = EtcdCluster(root / "etcd", members=1).start()
        self.client = EtcdClient(self.etcd.endpoints)
        self.store = EtcdStore(self.client, "tester")
        token = os.urandom(16).hex()
        self.names = names
        self.nodes = []
        for index, node_id in enumerate(names):
            node = ClusterNode(
                root / node_id, node_id, f"127.0.0.{index + 2}", self.etcd.endpoints, token
            )
            node.args += ["--repair-sweep", "3600"]
            self.nodes.append(node)
            node.start()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
        self.client.close()
        self.etcd.cleanup()

    def placed_alone_on(self, node_id: str, stem: str) -> str:
        for index in range(200):
            name = f"{stem}{index}"
            if placement.choose(name, self.names, 1) == (node_id,):
                return name
        raise AssertionError("no such name")

    def add_replica(self, repo: str, node_id: str) -> None:
        """Widen a repo's placement straight in etcd: no push asks anyone to copy."""
        record = self.store.get_repo(repo)
        assert record is not None
        wider = tuple(sorted({*record.placement, node_id}))
        self.client.put(
            self.store.keys.repo(repo),
            repo_json(replace(record, replicas=len(wider), placement=wider)),
        )
