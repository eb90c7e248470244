"""Common ancestors in the commit graph (pure logic over a parent lookup).

A merge commit has two parents, so history is a graph, not a chain. The merge base of
two commits is their nearest common ancestor: a commit both reach that no other common
ancestor descends from. It is found as git does: walk back from both commits newest
first, painting each commit with the sides that reach it; a commit painted by both is a
candidate and paints its ancestors "stale", and the walk ends when only stale commits
are left, so its cost follows the commits since the fork, not the whole history.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

OURS, THEIRS, STALE = 1, 2, 4
BOTH = OURS | THEIRS


@dataclass(frozen=True)
class GraphNode:
    """What the walk needs of a commit."""

    id: str
    created: datetime
    parents: tuple[str, ...]


Lookup = Callable[[str], GraphNode]


def merge_bases(ours: str, theirs: str, lookup: Lookup) -> list[str]:
    """The nearest common ancestors of two commits (a commit is its own ancestor).

    Args:
        ours, theirs: commit ids.
        lookup: a commit's node by id.
    Returns:
        The best common ancestors, newest first: empty when the two share no history,
        ``[theirs]`` when ``theirs`` is an ancestor of ``ours`` (and the other way round),
        more than one after criss-cross merges.
    """
    if ours == theirs:
        return [ours]
    nodes: dict[str, GraphNode] = {}

    def node(commit: str) -> GraphNode:
        if commit not in nodes:
            nodes[commit] = lookup(commit)
        return nodes[commit]

    paint = {ours: OURS, theirs: THEIRS}
    queue: list[tuple[float, str]] = []
    for commit in (ours, theirs):
        heapq.heappush(queue, (-node(commit).created.timestamp(), commit))
    found: list[str] = []
    while any(not paint[c] & STALE for _, c in queue):
        _, commit = heapq.heappop(queue)
        flags = paint[commit] & (BOTH | STALE)
        if flags == BOTH:
            found.append(commit)
            flags |= STALE
            paint[commit] |= STALE
        for parent in node(commit).parents:
            if paint.get(parent, 0) & flags == flags:
                continue
            paint[parent] = paint.get(parent, 0) | flags
            heapq.heappush(queue, (-node(parent).created.timestamp(), parent))
    return _without_ancestors(found, node)


def _without_ancestors(candidates: list[str], node: Lookup) -> list[str]:
    """The candidates that are no ancestor of another candidate (clocks can be off, so
    the walk's order alone does not prove it), newest first."""
    if len(candidates) < 2:
        return candidates
    kept = []
    for candidate in candidates:
        others = set(candidates) - {candidate}
        seen: set[str] = set()
        stack = [p for other in others for p in node(other).parents]
        while stack and candidate not in seen:
            commit = stack.pop()
            if commit not in seen:
                seen.add(commit)
                stack.extend(node(commit).parents)
        if candidate not in seen:
            kept.append(candidate)
    return sorted(kept, key=lambda c: node(c).created, reverse=True)
