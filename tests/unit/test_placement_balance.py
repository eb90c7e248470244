"""Load-bounded placement against a small model of a cluster: any sequence of creates
and node deaths, each death followed by the repair pass's plan.

After every step each repo has min(replicas, live) distinct live nodes; a death moves
only repos that had a replica on the dead node, each by exactly the replicas it lost
(the fewest moves possible); and the fullest and the emptiest live node stay within the
band ``placement.fill`` keeps: ``slack + 1`` after creates, and one more after repairs
while at least twice the largest replica count of nodes live. (On fewer, a repo's
survivors can be the whole band, its replacement has to go above it, and the repo's
own replicas, all on distinct nodes, make up much of every node's load anyway.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_volume.cluster import placement


@dataclass(frozen=True)
class Repo:
    """A repo record as placement reads it."""

    name: str
    replicas: int
    placement: tuple[str, ...]


@dataclass(frozen=True)
class Create:
    count: int
    replicas: int


@dataclass(frozen=True)
class Kill:
    index: int


STEPS = st.lists(
    st.one_of(
        st.builds(Create, st.integers(1, 60), st.integers(1, 4)),
        st.builds(Kill, st.integers(0, 30)),
    ),
    max_size=12,
)


class Model:
    """The cluster as placement sees it: live nodes and repo records."""

    def __init__(self, nodes: int) -> None:
        self.live = [f"n{i}" for i in range(nodes)]
        self.repos: dict[str, Repo] = {}
        self.band = 0
        self.widest = 0
        """The widest band (``slack + 1``) a create saw: the spread's bound."""

    def loads(self) -> Counter[str]:
        return placement.load_of((r.placement for r in self.repos.values()), self.live)

    def create(self, step: Create) -> None:
        loads = self.loads()
        self.widest = max(self.widest, step.replicas)
        for _ in range(step.count):
            name = f"r{len(self.repos)}"
            self.band = max(self.band, placement.slack(loads, self.live) + 1)
            chosen = placement.choose(name, self.live, step.replicas, loads)
            assert len(chosen) == len(set(chosen)) == min(step.replicas, len(self.live))
            loads.update(chosen)
            self.repos[name] = Repo(name, step.replicas, chosen)

    def kill(self, step: Kill) -> None:
        dead = self.live.pop(step.index % len(self.live))
        moves = placement.repair_plan(list(self.repos.values()), self.live)
        moved = {move.repo: move for move in moves}
        assert len(moved) == len(moves)
        for repo in self.repos.values():
            if dead not in repo.placement:
                assert repo.name not in moved, "a repo without a dead replica moved"
                continue
            move = moved[repo.name]
            assert move.dropped == (dead,)
            # Exactly the replica lost, unless too few nodes are left for it.
            assert len(move.added) == min(1, len(self.live) - (len(repo.placement) - 1))
            self.repos[repo.name] = Repo(repo.name, repo.replicas, move.after)

    def check(self) -> None:
        live = set(self.live)
        for repo in self.repos.values():
            assert len(set(repo.placement)) == len(repo.placement)
            assert set(repo.placement) <= live
            assert len(repo.placement) == min(repo.replicas, len(live)), repo

    def spread(self) -> int:
        loads = self.loads()
        if not self.repos:
            return 0
        return max(loads.values()) - min(loads.values())


@settings(max_examples=100, deadline=None)
@given(nodes=st.integers(1, 12), steps=STEPS)
def test_creates_and_deaths_keep_balance_and_move_the_least(
    nodes: int, steps: list[Create | Kill]
) -> None:
    model = Model(nodes)
    repaired = False
    for step in steps:
        if isinstance(step, Create):
            model.create(step)
        elif len(model.live) > 1:
            model.kill(step)
            repaired = True
        model.check()
        if not repaired:
            assert model.spread() <= model.band, model.loads()
        elif len(model.live) >= 2 * model.widest:
            assert model.spread() <= model.band + 1, model.loads()


@settings(max_examples=40, deadline=None)
@given(nodes=st.integers(2, 12), creates=st.lists(st.integers(1, 150), min_size=1, max_size=5))
def test_creates_alone_stay_within_the_band(nodes: int, creates: list[int]) -> None:
    model = Model(nodes)
    for count in creates:
        model.create(Create(count, 2))
        assert model.spread() <= model.band, model.loads()


def test_fifty_nodes_two_thousand_repos_within_ten_percent() -> None:
    """The issue's numbers: 2,000 repos x 2 on 50 nodes, then 5 die and are repaired
    (plain rendezvous is 1.238 / 0.750 here)."""
    model = Model(50)
    model.create(Create(2_000, 2))
    for mean in (80.0, 4_000 / 45):
        loads = model.loads()
        assert sum(loads.values()) == 4_000
        assert max(loads.values()) <= 1.1 * mean and min(loads.values()) >= 0.9 * mean, loads
        if len(model.live) == 45:
            break
        for index in (1, 10, 19, 28, 37):  # node01, node11, ... as the positions shift
            model.kill(Kill(index))
        model.check()


def test_without_loads_it_is_plain_rendezvous() -> None:
    nodes = [f"n{i}" for i in range(8)]
    for index in range(50):
        name = f"r{index}"
        plain = tuple(sorted(placement.rank(name, nodes)[:3]))
        assert placement.choose(name, nodes, 3) == plain
        assert placement.choose(name, nodes, 3, dict.fromkeys(nodes, 7)) == plain


def test_a_full_node_is_passed_over_and_an_empty_one_preferred() -> None:
    nodes = [f"n{i}" for i in range(6)]
    first = placement.rank("photos", nodes)[0]
    loads = dict.fromkeys(nodes, 10)
    loads[first] = 10 + placement.MIN_SLACK + 1
    assert first not in placement.choose("photos", nodes, 2, loads)
    last = placement.rank("photos", nodes)[-1]
    loads = dict.fromkeys(nodes, 10 + placement.MIN_SLACK + 1)
    loads[last] = 10
    assert placement.choose("photos", nodes, 1, loads) == (last,)
