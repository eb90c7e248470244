"""Rendezvous placement: pure, deterministic, minimal movement on repair."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.cluster import placement

NODES = st.lists(
    st.text("abcdefgh0123456789", min_size=1, max_size=6), min_size=1, max_size=8, unique=True
)


def test_choose_is_deterministic_and_bounded() -> None:
    nodes = ["n1", "n2", "n3", "n4"]
    first = placement.choose("photos", nodes, 2)
    assert first == placement.choose("photos", list(reversed(nodes)), 2)
    assert len(first) == 2 and set(first) <= set(nodes)
    assert placement.choose("photos", ["n1"], 3) == ("n1",)
    assert placement.choose("photos", [], 2) == ()


def test_repos_spread_over_nodes() -> None:
    nodes = [f"n{i}" for i in range(4)]
    counts = dict.fromkeys(nodes, 0)
    for index in range(400):
        for node in placement.choose(f"repo{index}", nodes, 2):
            counts[node] += 1
    assert min(counts.values()) > 150, counts  # 200 each on average


@given(repo=st.text(min_size=1, max_size=10), nodes=NODES, replicas=st.integers(1, 4))
def test_repair_keeps_survivors_and_fills_gaps(repo: str, nodes: list[str], replicas: int) -> None:
    current = placement.choose(repo, nodes, replicas)
    dead = current[0]
    live = [n for n in nodes if n != dead]
    repaired = placement.repair(repo, current, live, replicas)
    assert dead not in repaired
    assert set(current) - {dead} <= set(repaired)
    assert len(repaired) == min(replicas, len(live))
    # Nothing changes when nothing died.
    assert placement.repair(repo, current, nodes, replicas) == current


def test_removing_a_node_moves_only_its_repos() -> None:
    nodes = [f"n{i}" for i in range(5)]
    before = {f"r{i}": placement.choose(f"r{i}", nodes, 2) for i in range(200)}
    after = {r: placement.repair(r, p, nodes[:-1], 2) for r, p in before.items()}
    moved = [r for r in before if before[r] != after[r]]
    assert all("n4" in before[r] for r in moved)


@pytest.mark.parametrize(("nodes", "repos"), [(5, 2_000), (50, 20_000)])
def test_balance_within_ten_percent(nodes: int, repos: int) -> None:
    """Every node holds within 10 % of the mean number of replicas once each node's
    mean is large enough: each replica lands independently, so a node's count is
    binomial and its spread shrinks only as 1/sqrt(mean). 2 replicas of 2,000 repos
    give 5 nodes 800 each (spread 3.2 %), but 50 nodes only 80 (11 %: the fullest of 50
    is then about 25 % over), so 50 nodes need about 20,000 repos (800 each)."""
    names = [f"node{i:02d}" for i in range(nodes)]
    counts = dict.fromkeys(names, 0)
    for index in range(repos):
        for node in placement.choose(f"repo{index:05d}", names, 2):
            counts[node] += 1
    mean = 2 * repos / nodes
    assert max(counts.values()) <= 1.1 * mean and min(counts.values()) >= 0.9 * mean, counts
