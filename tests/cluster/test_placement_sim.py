"""Placement and repair on a simulated 50-node cluster over a real etcd
(``tests/placement_sim.py``): real membership leases, real repo records, the repair
pass's own decision; only the bytes of a copy are left out.

Balance: rendezvous hashing places each replica independently, so a node's share is
binomial. With 1,000 repos of 2 replicas on 50 nodes the mean is 40 and one standard
deviation about 6.2 (15 %): every node within 10 % of the mean is not what independent
hashing gives at that size (about 20,000 repos are needed; see
``tests/unit/test_placement.py``). Here every node must be within 5 standard deviations
(9 to 71), which a skewed hash or a node left out breaks. Not 4: the names are fixed, and
with the first 600 of them node46 has 44 replicas of a mean 24, 4.2 standard deviations,
as one node in 50 now and then has.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd_cluster import EtcdCluster
from tests.placement_sim import SimCluster, balance

NODES = 50
REPOS = 1000
REPLICAS = 2
REVOKED = ["node03", "node17", "node29"]
EXPIRED = ["node38", "node44"]
"""Five nodes die: three leave at once (lease revoked), two stop renewing (expired)."""
SAMPLE = ["node00", "node03", "node21", "node38", "node49"]
"""The nodes whose passes show that a settled cluster stays put (a pass on each of 50
nodes takes a quarter of a second here: the repair after the deaths runs on all)."""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimCluster]:
    etcd = EtcdCluster(tmp_path / "etcd", members=1).start()
    cluster = None
    try:
        cluster = SimCluster(etcd.endpoints, NODES, ttl=3, replicas=REPLICAS).start()
        cluster.create_repos(REPOS)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        etcd.cleanup()


def assert_binomial_spread(counts: dict[str, int], trials: int, nodes: int) -> None:
    share = 1 / nodes
    mean = trials * share
    sigma = math.sqrt(trials * share * (1 - share))
    far = {node: n for node, n in counts.items() if abs(n - mean) > 5 * sigma}
    assert not far, f"nodes beyond 5 sigma of {mean:.1f} (sigma {sigma:.1f}): {far}"


def test_fifty_nodes_balance_and_minimal_repair(sim: SimCluster) -> None:
    before = sim.placements()
    assert len(before) == REPOS
    assert all(len(nodes) == REPLICAS for nodes in before.values())
    assert sim.holders() == before
    spread = balance(before.values(), sim.ids)
    assert sum(spread.counts.values()) == REPOS * REPLICAS
    assert_binomial_spread(spread.counts, REPOS * REPLICAS, NODES)

    # Nothing died: a repair pass changes nothing.
    idle = sim.repair(SAMPLE)
    assert (idle.written, idle.lost_races, idle.copies) == (0, 0, [])

    dead = set(REVOKED + EXPIRED)
    sim.kill(REVOKED, revoke=True)
    sim.kill(EXPIRED, revoke=False)
    live = sim.wait_live(NODES - len(dead))
    assert set(live) == set(sim.ids) - dead

    report = sim.repair(live)
    after = sim.placements()
    holders = sim.holders()
    lost = {repo: set(nodes) & dead for repo, nodes in before.items()}
    for repo, nodes in after.items():
        assert len(nodes) == REPLICAS and set(nodes) <= set(live), (repo, nodes)
        assert set(holders[repo]) & set(live) == set(nodes), (repo, holders[repo], nodes)
        if not lost[repo]:
            assert nodes == before[repo] and holders[repo] == before[repo], repo
        else:
            assert set(before[repo]) - lost[repo] <= set(nodes), repo
    # Each repo that lost holders got exactly as many new ones, and nothing else moved.
    copied = Counter(repo for repo, _node in report.copies)
    assert copied == Counter({repo: len(gone) for repo, gone in lost.items() if gone})
    assert report.written == len(copied)
    assert len(report.copies) == len(set(report.copies))

    again = sim.repair([node for node in SAMPLE if node in live])
    assert (again.written, again.copies) == (0, [])
    after_spread = balance(after.values(), live)
    assert_binomial_spread(after_spread.counts, REPOS * REPLICAS, len(live))
