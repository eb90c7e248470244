"""Input sets consistent by provenance, against a brute-force model.

The world: repo ``a`` (master) has a linear history; pipelines ``b`` and ``d`` read it,
each output commit made from some commit of ``a`` (never an older one than its parent
was made from: jobs run in order); pipeline ``c`` reads ``a``, ``b`` and ``d``. The
model tries every combination of commits in the three histories; the newest consistent
one is what ``resolve`` must pick, and it must say "waiting" when there is none.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_volume.meta import CommitRecord
from pfs_volume.pipelines.consistency import Provenance, resolve

START = datetime(2026, 1, 1, tzinfo=UTC)


class World:
    def __init__(self, a_count: int, b_from: list[int], d_from: list[int]) -> None:
        self.records: dict[tuple[str, str], CommitRecord] = {}
        tick = 0

        def add(repo: str, index: int, provenance: tuple[str, ...]) -> str:
            nonlocal tick
            tick += 1
            commit = f"{repo}{index}"
            self.records[(repo, commit)] = CommitRecord(
                id=commit,
                repo=repo,
                branch="master",
                parent=f"{repo}{index - 1}" if index else None,
                created=START + timedelta(seconds=tick),
                message="",
                origin="test",
                provenance=provenance,
            )
            return commit

        self.a = [add("a", i, ()) for i in range(a_count)]
        self.b = [add("b", i, (f"a@a{k}",)) for i, k in enumerate(b_from)]
        self.d = [add("d", i, (f"a@a{k}",)) for i, k in enumerate(d_from)]
        self.b_from = b_from
        self.d_from = d_from

    def lookup(self, repo: str, commit: str) -> CommitRecord | None:
        return self.records.get((repo, commit))


@st.composite
def worlds(draw: st.DrawFn) -> World:
    a_count = draw(st.integers(1, 6))

    def made_from() -> list[int]:
        steps = draw(st.lists(st.integers(0, a_count - 1), min_size=1, max_size=5))
        return sorted(steps)  # a pipeline's jobs run on ever newer input commits

    return World(a_count, made_from(), made_from())


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_resolve_picks_the_newest_consistent_set_or_waits(world: World) -> None:
    heads = {"a": ("a", world.a[-1]), "b": ("b", world.b[-1]), "d": ("d", world.d[-1])}
    found = resolve(heads, Provenance(world.lookup))
    consistent = [
        (ai, bi, di)
        for ai, bi, di in itertools.product(
            range(len(world.a)), range(len(world.b)), range(len(world.d))
        )
        if world.b_from[bi] == ai and world.d_from[di] == ai
    ]
    if not consistent:
        assert found.inputs is None and found.waiting, found
        return
    # Consistent sets are closed under the componentwise newest: that one is the answer.
    newest = (
        max(c[0] for c in consistent),
        max(c[1] for c in consistent),
        max(c[2] for c in consistent),
    )
    assert newest in consistent
    assert found.inputs == {
        "a": ("a", world.a[newest[0]]),
        "b": ("b", world.b[newest[1]]),
        "d": ("d", world.d[newest[2]]),
    }, (found, world.b_from, world.d_from)


def test_consistent_heads_are_taken_as_they_are() -> None:
    world = World(3, [0, 2], [1, 2])
    heads = {"a": ("a", "a2"), "b": ("b", "b1"), "d": ("d", "d1")}
    assert resolve(heads, Provenance(world.lookup)).inputs == heads


def test_a_diamond_moves_back_to_what_the_lagging_branch_was_made_from() -> None:
    # a moved to a2; b's newest output was made from a1: c runs on (a1, b's newest).
    world = World(3, [0, 1], [1])
    heads = {"a": ("a", "a2"), "b": ("b", "b1")}
    found = resolve(heads, Provenance(world.lookup))
    assert found.inputs == {"a": ("a", "a1"), "b": ("b", "b1")}


def test_no_common_commit_waits_and_says_why() -> None:
    world = World(3, [0], [2])
    heads = {"b": ("b", "b0"), "d": ("d", "d0")}
    found = resolve(heads, Provenance(world.lookup))
    assert found.inputs is None
    assert found.waiting is not None and "a/master" in found.waiting
    assert "waiting for the pipelines upstream" in found.waiting
