"""Merge bases on random commit graphs against the definition, computed by brute force:
the common ancestors that are no ancestor of another common ancestor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_volume.history.ancestry import GraphNode, merge_bases

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, GraphNode]:
    """Up to 25 commits, each with 0 (a root), 1 or 2 earlier parents; times mostly
    increasing, sometimes skewed (clocks of other nodes)."""
    nodes: dict[str, GraphNode] = {}
    for i in range(draw(st.integers(1, 25))):
        earlier = sorted(nodes)
        count = min(len(earlier), draw(st.sampled_from([0, 1, 1, 1, 2, 2])))
        parents: tuple[str, ...] = ()
        if count:
            parents = tuple(
                draw(
                    st.lists(st.sampled_from(earlier), min_size=count, max_size=count, unique=True)
                )
            )
        skew = draw(st.integers(-3, 0)) if draw(st.integers(0, 4)) == 0 else 0
        nodes[f"c{i:02d}"] = GraphNode(f"c{i:02d}", T0 + timedelta(seconds=i + skew), parents)
    return nodes


def ancestors(nodes: dict[str, GraphNode], commit: str) -> set[str]:
    seen, stack = set(), [commit]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(nodes[current].parents)
    return seen


@settings(max_examples=400, deadline=None)
@given(nodes=graphs(), data=st.data())
def test_merge_bases_are_the_best_common_ancestors(
    nodes: dict[str, GraphNode], data: st.DataObject
) -> None:
    a = data.draw(st.sampled_from(sorted(nodes)))
    b = data.draw(st.sampled_from(sorted(nodes)))
    common = ancestors(nodes, a) & ancestors(nodes, b)
    best = {c for c in common if not any(c in ancestors(nodes, o) - {o} for o in common)}
    found = merge_bases(a, b, nodes.__getitem__)
    assert set(found) == best and len(found) == len(best)
    assert [nodes[c].created for c in found] == sorted(
        (nodes[c].created for c in found), reverse=True
    )


def test_criss_cross_has_two_bases() -> None:
    def node(name: str, at: int, *parents: str) -> GraphNode:
        return GraphNode(name, T0 + timedelta(seconds=at), parents)

    nodes = {
        "r": node("r", 0),
        "a1": node("a1", 1, "r"),
        "b1": node("b1", 2, "r"),
        "a2": node("a2", 3, "a1", "b1"),
        "b2": node("b2", 4, "b1", "a1"),
    }
    assert merge_bases("a2", "b2", nodes.__getitem__) == ["b1", "a1"]
    assert merge_bases("a2", "a1", nodes.__getitem__) == ["a1"]
    assert merge_bases("a1", "b1", nodes.__getitem__) == ["r"]
