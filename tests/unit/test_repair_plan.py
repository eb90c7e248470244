"""The repair pass's decision (``placement.repair_plan``) against a small model: any
nodes, any subset of them live, any stored replica sets. After the plan every repo has
min(replicas, live) holders, all live; a repo whose set is whole and live is left alone;
the nodes added are the fewest that restore the count."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.cluster import placement

NODE_IDS = [f"n{i}" for i in range(10)]


@dataclass(frozen=True)
class Repo:
    """A repo record as the plan reads it."""

    name: str
    replicas: int
    placement: tuple[str, ...]


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[str], set[str], list[Repo]]:
    """Nodes, the live ones among them, and repos with any stored replica set (sorted
    by id, as the store keeps it; empty, short, full, over-full, with dead members)."""
    nodes = draw(st.lists(st.sampled_from(NODE_IDS), min_size=1, max_size=10, unique=True))
    live = set(draw(st.lists(st.sampled_from(nodes), max_size=len(nodes), unique=True)))
    repos = []
    for index in range(draw(st.integers(0, 12))):
        held = draw(st.lists(st.sampled_from(nodes), max_size=len(nodes), unique=True))
        repos.append(Repo(f"r{index}", draw(st.integers(1, 4)), tuple(sorted(held))))
    return nodes, live, repos


def apply(repos: list[Repo], moves: list[placement.Move]) -> dict[str, tuple[str, ...]]:
    after = {repo.name: repo.placement for repo in repos}
    for move in moves:
        assert after[move.repo] == move.before
        after[move.repo] = move.after
    return after


@given(clusters())
def test_every_repo_ends_whole_and_live(cluster: tuple[list[str], set[str], list[Repo]]) -> None:
    _nodes, live, repos = cluster
    moves = placement.repair_plan(repos, live)
    assert len({move.repo for move in moves}) == len(moves)
    after = apply(repos, moves)
    for repo in repos:
        kept = set(repo.placement) & live
        target = min(repo.replicas, len(live))
        now = after[repo.name]
        assert now == tuple(sorted(set(now))), "sorted by id, no duplicates"
        assert set(now) <= live
        assert len(now) == target
        if len(kept) <= target:
            # Every live member stays (its data is there), and only the gap is filled.
            assert kept <= set(now)
            assert len(set(now) - kept) == target - len(kept)
            # Which nodes fill the gaps (rendezvous bounded by load) is
            # tests/unit/test_placement_balance.py's subject.
        else:
            assert set(now) <= kept, "too many live members: some leave, none join"
        untouched = set(repo.placement) <= live and len(repo.placement) == target
        assert (repo.name in {m.repo for m in moves}) == (not untouched)


@given(
    nodes=st.lists(st.sampled_from(NODE_IDS), min_size=1, max_size=10, unique=True),
    names=st.lists(st.text("abcxyz019", min_size=1, max_size=6), max_size=30, unique=True),
    replicas=st.integers(1, 4),
    dead_count=st.integers(0, 10),
)
def test_a_node_loss_moves_only_what_it_held(
    nodes: list[str], names: list[str], replicas: int, dead_count: int
) -> None:
    """Repos placed by ``choose`` over every node, then some nodes die: only repos that
    had a dead member move, each gets as many new holders as it lost (fewer only when
    too few nodes live), and no live member is dropped."""
    repos = [Repo(name, replicas, placement.choose(name, nodes, replicas)) for name in names]
    dead = set(nodes[:dead_count])
    live = set(nodes) - dead
    moves = placement.repair_plan(repos, live)
    moved = {move.repo: move for move in moves}
    for repo in repos:
        lost = set(repo.placement) & dead
        if not lost:
            assert repo.name not in moved
            continue
        move = moved[repo.name]
        assert set(move.dropped) == lost
        kept = len(repo.placement) - len(lost)
        assert len(move.added) == min(len(lost), len(live) - kept)
        assert not set(move.added) & set(repo.placement)


def test_nothing_moves_when_nothing_died() -> None:
    nodes = [f"n{i}" for i in range(6)]
    repos = [Repo(f"r{i}", 2, placement.choose(f"r{i}", nodes, 2)) for i in range(100)]
    assert placement.repair_plan(repos, nodes) == []


def repair_before_the_shortcut(
    repo: str, current: tuple[str, ...], live: set[str], replicas: int
) -> tuple[str, ...]:
    """``placement.repair`` as it was before it skipped ranking for a whole, live set
    (with a node the record names twice counted once: it holds one copy)."""
    kept = list(dict.fromkeys(node for node in current if node in live))
    if len(kept) > replicas:
        kept = placement.rank(repo, kept)[:replicas]
    spares = [node for node in placement.rank(repo, live) if node not in kept]
    return tuple(sorted(kept + spares[: max(replicas - len(kept), 0)]))


@given(
    current=st.lists(st.sampled_from(NODE_IDS), max_size=6),
    live=st.sets(st.sampled_from(NODE_IDS)),
    replicas=st.integers(0, 5),
    repo=st.text(max_size=4),
)
def test_repair_answers_as_before(
    current: list[str], live: set[str], replicas: int, repo: str
) -> None:
    """Any stored set, even unsorted or with duplicates: the same answer as before."""
    expected = repair_before_the_shortcut(repo, tuple(current), live, replicas)
    assert placement.repair(repo, current, live, replicas) == expected
