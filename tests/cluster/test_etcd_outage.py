"""etcd trouble: losing one member changes nothing visible; losing all of them makes
volume operations fail fast with a clear error, and everything recovers after; no
committed byte is lost."""

from __future__ import annotations

import os
import time

import pytest

from tests.cluster.conftest import Cluster, wait_for

# Fail-fast bounds are timing: run on one xdist worker, one after another with the other
# etcd timing tests.
pytestmark = pytest.mark.xdist_group("timing-etcd")

FAIL_FAST = 30.0
"""Seconds a volume operation may take to fail while etcd is down: well inside the
60 s Docker gives most plugin calls (and the 2 min of Mount)."""


def all_digests(cluster: Cluster, commits: dict[str, str]) -> dict[str, dict[str, str]]:
    node = cluster.nodes[1]
    return {commit: node.read_commit(repo, commit) for commit, repo in commits.items()}


def test_one_etcd_member_killed_changes_nothing_visible(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    commits = {a.write_commit("r1", {"a": os.urandom(1000)}): "r1"}
    before = all_digests(cluster, commits)
    cluster.etcd.kill(0)
    commits[b.write_commit("r1", {"b": os.urandom(1000)})] = "r1"
    commits[c.write_commit("r2", {"c": os.urandom(1000)})] = "r2"
    assert [n["id"] for n in a.cli_json("node", "list")] == ["node0", "node1", "node2"]
    after = all_digests(cluster, commits)
    assert {k: after[k] for k in before} == before
    assert len(a.cli_json("log", "r1")) == 2


def test_all_etcd_members_down_fails_fast_then_recovers(cluster: Cluster) -> None:
    a, b, _c = cluster.nodes
    commits = {a.write_commit("keep", {"f": os.urandom(5000)}): "keep"}
    before = all_digests(cluster, commits)
    cluster.etcd.stop_all()
    started = time.monotonic()
    reply = a.mount(a.volume("keep"), "m1")
    elapsed = time.monotonic() - started
    assert "etcd" in reply.get("Err", ""), reply
    assert elapsed < FAIL_FAST, elapsed
    listed = a.cli("node", "list", check=False)
    assert listed.returncode != 0 and "etcd" in listed.stderr
    cluster.etcd.restart_all()
    wait_for(lambda: len(a.cli_json("node", "list")) == 3, 60, "all nodes registered again")
    commits[b.write_commit("keep", {"g": os.urandom(5000)})] = "keep"
    after = all_digests(cluster, commits)
    assert {k: after[k] for k in before} == before
    assert len(after) == 2
