"""Attack on issue 14's bounded-load placement with odd repo records: a placement that
names one node twice (a hand edit, an old writer) counts as two replicas. ``repair``
kept both entries as "live members", found nothing to fill, and so never gave the repo
its second copy: one node held it while the record claimed two.

Finding (fixed): repair counts each live member once."""

from __future__ import annotations

from dataclasses import dataclass

from pfs_volume.cluster import placement


@dataclass(frozen=True)
class Record:
    name: str
    replicas: int
    placement: tuple[str, ...]


def test_a_node_named_twice_is_one_replica() -> None:
    after = placement.repair("photos", ("a", "a"), ["a", "b", "c"], 2)
    assert len(set(after)) == 2 and "a" in after, after
    assert len(after) == len(set(after))


def test_repair_plan_fills_a_placement_that_names_a_node_twice() -> None:
    records = [Record("photos", 2, ("b", "b")), Record("other", 2, ("a", "c"))]
    moves = {m.repo: m for m in placement.repair_plan(records, ["a", "b", "c"])}
    assert "photos" in moves
    assert len(set(moves["photos"].after)) == 2 and "b" in moves["photos"].after


def test_a_dead_node_named_twice_is_replaced_once() -> None:
    after = placement.repair("photos", ("a", "d", "d"), ["a", "b", "c"], 2)
    assert len(set(after)) == 2 == len(after) and "a" in after, after
