"""Placement: which nodes hold a repo's commits, by rendezvous (highest random weight)
hashing over the live nodes.

Every node computes the same answer from the same inputs, so no coordinator is needed
to choose; the answer is stored with the repo, so placement changes only on repair, and
repair keeps the surviving members (moving data only to replace what was lost).

``repair_plan`` is the repair pass's whole decision (``Replicator.repair`` applies it
with a compare-and-swap per repo), kept pure so it can be checked over any cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


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
    members = list(current)
    kept = [node for node in members if node in alive]
    if len(set(kept)) == len(members) == min(replicas, len(alive)):
        # Whole and live (the common case on every pass): no need to rank all nodes.
        return tuple(sorted(kept))
    if len(kept) > replicas:
        kept = rank(repo, kept)[:replicas]
    spares = [node for node in rank(repo, alive) if node not in kept]
    return tuple(sorted(kept + spares[: max(replicas - len(kept), 0)]))


class Placed(Protocol):
    """What the repair decision reads of a repo record (``meta.RepoRecord`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def replicas(self) -> int: ...

    @property
    def placement(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Move:
    """One repo's re-placement: the replica set it has and the one it should have."""

    repo: str
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def added(self) -> tuple[str, ...]:
        """The nodes that are to copy the repo's commits, by id."""
        return tuple(node for node in self.after if node not in self.before)

    @property
    def dropped(self) -> tuple[str, ...]:
        """The nodes that leave the replica set, by id."""
        return tuple(node for node in self.before if node not in self.after)


def repair_plan(repos: Iterable[Placed], live: Iterable[str]) -> list[Move]:
    """The repos whose replica set ``repair`` changes over the ``live`` nodes, each with
    its new set, in the order given. Repos that keep their set are left out."""
    alive = sorted(set(live))
    moves = []
    for repo in repos:
        after = repair(repo.name, repo.placement, alive, repo.replicas)
        if after != repo.placement:
            moves.append(Move(repo.name, repo.placement, after))
    return moves
