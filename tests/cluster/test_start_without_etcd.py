"""A cluster node starts while etcd is down, or goes away part-way through start-up: it
serves a clear error meanwhile, retries with backoff, and joins once etcd is back.

A real single-member etcd (``tests.etcd_cluster``) is started after the node, or killed
while start-up is held (``NAME=hold`` failpoint) just after the node joined it.
"""

from __future__ import annotations

import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import ClusterNode
from tests.etcd_cluster import EtcdCluster
from tests.integration.test_starting import HeldStart, create_in_background, wait_for_log

WAIT = 60.0
STOP_TIMEOUT = 20.0
"""A stop while etcd is down may wait out one etcd call's budget (10 s)."""


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    """One etcd member, not started: its endpoints are known before it runs."""
    cluster = EtcdCluster(tmp_path / "etcd", members=1)
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def node(
    tmp_path: Path, etcd: EtcdCluster, attach_log: Callable[[str, Path], None]
) -> Iterator[ClusterNode]:
    made = ClusterNode(
        tmp_path / "node", "early", "127.0.0.2", etcd.endpoints, secrets.token_hex(8)
    )
    attach_log("node log", made.log_path)
    try:
        yield made
    finally:
        made.cleanup()


def unreachable_message(etcd: EtcdCluster) -> re.Pattern[str]:
    return re.compile(
        rf"pfs cannot reach etcd at {re.escape(etcd.endpoints[0])}: retrying in [0-9.]+ s; .+"
    )


def wait_for_retries(node: ClusterNode, count: int) -> None:
    """Wait until the node logged ``count`` failed attempts to reach etcd."""
    deadline = time.monotonic() + WAIT
    while node.log().count("pfs cannot reach etcd") < count:
        assert node.process is not None and node.process.poll() is None, node.log()
        assert time.monotonic() < deadline, node.log()
        time.sleep(0.1)


def assert_works(node: ClusterNode) -> None:
    """The node serves volumes and is a registered member of the cluster."""
    assert node.plugin("VolumeDriver.Create", {"Name": "joined"}) == {}
    commit = node.write_commit("joined", {"a": b"1"})
    assert list(node.read_commit("joined", commit)) == ["a"]
    nodes = node.api("GET", "/v1/nodes").json()
    assert nodes["cluster"] is True
    assert [n["id"] for n in nodes["nodes"]] == ["early"]


def test_a_node_started_before_etcd_serves_a_clear_error_and_joins_when_etcd_comes(
    node: ClusterNode, etcd: EtcdCluster
) -> None:
    node.start(ready=False)
    wait_for_retries(node, 2)  # it retries, and stays up

    assert node.plugin("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
    for call in ("VolumeDriver.Get", "VolumeDriver.List"):
        answer = node.plugin(call, {"Name": "joined"})
        assert unreachable_message(etcd).fullmatch(answer["Err"]), answer
    creating, created = create_in_background(node, "early")
    wait_for_log(node, "Create waits for start-up (pfs cannot reach etcd at ")
    health = node.api("GET", "/v1/health")
    assert health.status_code == 503
    assert unreachable_message(etcd).fullmatch(health.json()["error"]["message"])
    waits = [float(w) for w in re.findall(r"retrying in ([0-9.]+) s", node.log())]
    assert waits[:2] == [0.5, 1.0], "the waits between retries grow"

    etcd.start()
    creating.join(timeout=WAIT)
    assert created == [{}], "the Create made while etcd was down waited, and was served"
    node.wait_ready(WAIT)
    assert_works(node)


def test_etcd_going_away_during_start_up_is_waited_for_too(
    node: ClusterNode, etcd: EtcdCluster, tmp_path: Path
) -> None:
    held = HeldStart(tmp_path / "hold")
    etcd.start()
    node.start(env=held.env("start.store_open"), ready=False)
    held.wait_held("start.store_open", node)  # joined: registered, store open
    etcd.kill(0)
    held.release("start.store_open")  # recovery now meets a dead etcd

    wait_for_retries(node, 1)
    answer = node.plugin("VolumeDriver.List")
    assert unreachable_message(etcd).fullmatch(answer["Err"]), answer

    etcd.restart(0)
    node.wait_ready(WAIT)
    assert_works(node)


def test_sigterm_while_waiting_for_etcd_stops_cleanly(node: ClusterNode, etcd: EtcdCluster) -> None:
    node.start(ready=False)
    wait_for_retries(node, 1)
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(timeout=STOP_TIMEOUT) == 0, node.log()
    node.process = None
    assert not node.plugin_socket.exists()
    assert not node.api_socket.exists()
    assert not node.pool_root.is_mount()


def test_a_stop_while_etcd_is_down_answers_the_waiting_calls_why(
    node: ClusterNode, etcd: EtcdCluster
) -> None:
    """Docker's Unmount of a container stopped meanwhile gets "pfs is stopping", not a
    connection closed under it after the sockets' 5 s of grace."""
    node.start(ready=False)
    wait_for_retries(node, 1)
    answers: list[Any] = []
    unmount = threading.Thread(
        target=lambda: answers.append(node.plugin("VolumeDriver.Unmount", {"Name": "a", "ID": "m"}))
    )
    unmount.start()
    wait_for_log(node, "Unmount waits for start-up (pfs cannot reach etcd at ")
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    unmount.join(timeout=STOP_TIMEOUT)
    assert node.process.wait(timeout=STOP_TIMEOUT) == 0, node.log()
    node.process = None
    [answer] = answers
    assert answer["Err"].startswith("pfs is stopping (pfs cannot reach etcd at "), answer
