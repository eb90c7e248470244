"""Placement: which nodes hold a repo's commits, by rendezvous (highest random weight)
hashing over the live nodes, bounded by load.

Every node computes the same answer from the same inputs, so no coordinator is needed
to choose; the answer is stored with the repo, so placement changes only on repair, and
repair keeps the surviving members (moving data only to replace what was lost).

Plain rendezvous places each replica independently, so a node's share is binomial: at
50 nodes and 80 replicas each the fullest node holds about 25 % over the mean and the
emptiest 25 % under. Since placement is stored, a choice may look at the load (replicas
per live node, counted from the repo records), as consistent hashing with bounded loads
does (Mirrokni, Thorup, Zadimoghaddam 2018), bounded on both sides: a repo's replicas go
to its most preferred nodes among those within ``slack`` replicas of the emptiest live
node (the band), and only when too few are in the band to the least loaded of the rest.
A node in the band gets at most one replica per repo, so after any sequence of creates
the fullest and the emptiest live node are at most ``slack + 1`` apart; a repair adds
at most one more (a survivor of the repo may be the only node in the band). ``slack``
is ``BAND`` of the mean, so the spread is within ``BAND`` of the mean once the mean is
large enough (``MIN_SLACK``), and rendezvous alone decides while loads are close.

``repair_plan`` is the repair pass's whole decision (``Replicator.repair`` applies it
with a compare-and-swap per repo), kept pure so it can be checked over any cluster.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

BAND = 0.08
"""How far the fullest live node may be from the emptiest, as a share of the mean (the
target is 10 %: the rest is left for creates on other nodes that did not see each
other, and for repair's one extra)."""
MIN_SLACK = 4
"""The band is never narrower than this many replicas: while loads differ by a few
repos, rendezvous alone decides (and a repo's place stays predictable from its name)."""


def weight(repo: str, node: str) -> int:
    """The rendezvous weight of ``node`` for ``repo``: a stable 64-bit hash of both."""
    digest = hashlib.blake2b(f"{repo}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(repo: str, nodes: Iterable[str]) -> list[str]:
    """``nodes`` from most to least preferred for ``repo`` (ties broken by id)."""
    return sorted(set(nodes), key=lambda node: (-weight(repo, node), node))


def slack(loads: Mapping[str, int], live: Collection[str]) -> int:
    """How many replicas over the emptiest of ``live`` a node may hold and still be in
    the band: ``BAND`` of the mean less one (the pick itself), at least ``MIN_SLACK``."""
    if not live:
        return MIN_SLACK
    mean = sum(loads.get(node, 0) for node in live) / len(live)
    return max(MIN_SLACK, math.floor(BAND * mean) - 1)


def fill(
    repo: str,
    live: Collection[str],
    count: int,
    loads: Mapping[str, int] | None = None,
    taken: Collection[str] = (),
) -> list[str]:
    """Up to ``count`` live nodes not in ``taken`` for ``repo``: its most preferred ones
    within ``slack`` of the emptiest live node, then the least loaded of the others
    (ties by preference). Without ``loads`` (or all equal): plain rendezvous order."""
    if count <= 0:
        return []
    ranked = [node for node in rank(repo, live) if node not in taken]
    if not loads:
        return ranked[:count]
    ceiling = min(loads.get(node, 0) for node in live) + slack(loads, live)
    inside = [node for node in ranked if loads.get(node, 0) <= ceiling]
    if len(inside) < count:
        # sorted is stable: equal loads keep their preference order.
        inside += sorted(
            (node for node in ranked if loads.get(node, 0) > ceiling),
            key=lambda node: loads.get(node, 0),
        )
    return inside[:count]


def choose(
    repo: str, live: Iterable[str], replicas: int, loads: Mapping[str, int] | None = None
) -> tuple[str, ...]:
    """A new repo's replica set: ``replicas`` live nodes (fewer when fewer are live) by
    ``fill``, sorted by id. ``loads``: replicas per node now (none: plain rendezvous)."""
    return tuple(sorted(fill(repo, set(live), replicas, loads)))


def repair(
    repo: str,
    current: Iterable[str],
    live: Iterable[str],
    replicas: int,
    loads: Mapping[str, int] | None = None,
) -> tuple[str, ...]:
    """The replica set after membership changed: the live members of ``current`` stay
    (their data is there already), dead ones go, and ``fill`` picks other live nodes
    for the gaps up to ``replicas``. Sorted by id; equal to ``current`` when nothing
    needs to change."""
    alive = set(live)
    members = list(current)
    # A record naming a node twice (an old writer, a hand edit) holds one copy there.
    kept = list(dict.fromkeys(node for node in members if node in alive))
    if len(set(kept)) == len(members) == min(replicas, len(alive)):
        # Whole and live (the common case on every pass): no need to rank all nodes.
        return tuple(sorted(kept))
    if len(kept) > replicas:
        kept = rank(repo, kept)[:replicas]
    spares = fill(repo, alive, replicas - len(kept), loads, taken=kept)
    return tuple(sorted(kept + spares))


def load_of(placements: Iterable[Iterable[str]], live: Iterable[str]) -> Counter[str]:
    """Replicas per live node: in how many of ``placements`` each of ``live`` is."""
    counts = Counter(dict.fromkeys(live, 0))
    for nodes in placements:
        counts.update(node for node in set(nodes) if node in counts)
    return counts


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
    its new set, in the order given. Repos that keep their set are left out.

    The loads come from the records given and follow the plan, repo by repo; so a node
    that reads the records while another writes this same plan in order (a prefix of
    its moves done) plans the rest of it alike, and their compare-and-swaps agree."""
    alive = sorted(set(live))
    records = list(repos)
    loads = load_of((repo.placement for repo in records), alive)
    moves = []
    for repo in records:
        after = repair(repo.name, repo.placement, alive, repo.replicas, loads)
        if after != repo.placement:
            move = Move(repo.name, repo.placement, after)
            moves.append(move)
            loads.subtract(node for node in set(move.dropped) if node in loads)
            loads.update(set(move.added))
    return moves
