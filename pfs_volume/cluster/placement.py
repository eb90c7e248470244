"""Placement: which nodes hold a repo's commits, by rendezvous (highest random weight)
hashing over the live nodes.

Every node computes the same answer from the same inputs, so no coordinator is needed
to choose; the answer is stored with the repo, so placement changes only on repair, and
repair keeps the surviving members (moving data only to replace what was lost).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(repo: str, node: str) -> int:
    """The rendezvous weight of ``node`` for ``repo``: a stable 64-bit hash of both."""
    digest = hashlib.blake2b(f"{repo}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(repo: str, nodes: Iterable[str]) -> list[str]:
    """``nodes`` from most to least preferred for ``repo`` (ties broken by id)."""
    return sorted(set(nodes), key=lambda node: (-weight(repo, node), node))


def choose(repo: str, live: Iterable[str], replicas: int) -> tuple[str, ...]:
    """A new repo's replica set: the ``replicas`` most preferred live nodes (fewer when
    fewer are live), sorted by id."""
    return tuple(sorted(rank(repo, live)[: max(replicas, 0)]))


def repair(
    repo: str, current: Iterable[str], live: Iterable[str], replicas: int
) -> tuple[str, ...]:
    """The replica set after membership changed: the live members of ``current`` stay
    (their data is there already), dead ones go, and the most preferred other live nodes
    fill the gaps up to ``replicas``. Sorted by id; equal to ``current`` when nothing
    needs to change."""
    alive = set(live)
    kept = [node for node in current if node in alive]
    if len(kept) > replicas:
        kept = rank(repo, kept)[:replicas]
    spares = [node for node in rank(repo, alive) if node not in kept]
    return tuple(sorted(kept + spares[: max(replicas - len(kept), 0)]))
