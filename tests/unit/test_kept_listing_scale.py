"""List's kept answer (``volumes/kept_listing.py``) brought up to date after very many
names changed at once, and many names resolved at once, cost what they cost, not their
square."""

from __future__ import annotations

import random
import time
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime

from pfs_volume.meta import CommitRecord, StoreChanges, VolumeRecord
from pfs_volume.meta.change_log import ChangeLog
from pfs_volume.names import parse_volume_name
from pfs_volume.volumes.kept_listing import KeptListing
from pfs_volume.volumes.listing import PREFETCH_COMMITS, OnceReads

NAMES = 20_000
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


class Names:
    """The part of a MetadataStore List reads: volume names and their change log."""

    def __init__(self) -> None:
        self.records: dict[str, VolumeRecord] = {}
        self.log = ChangeLog()

    def add(self, names: Sequence[str]) -> None:
        for name in names:
            self.records[name] = VolumeRecord(name, "r", WHEN)
            self.log.note(volumes=(name,))

    def remove(self, names: Sequence[str]) -> None:
        for name in names:
            del self.records[name]
            self.log.note(volumes=(name,))

    def changed_since(self, cursor: Hashable | None) -> StoreChanges:
        return self.log.changes(cursor)

    def list_volumes(self) -> list[VolumeRecord]:
        return [self.records[name] for name in sorted(self.records)]

    def get_volume(self, name: str) -> VolumeRecord | None:
        return self.records.get(name)


def test_many_names_of_one_repo_made_between_two_lists() -> None:
    store = Names()
    listing = KeptListing(
        store,  # type: ignore[arg-type]
        lambda records: ([f"/pool/{r.name}" for r in records], [frozenset()] * len(records)),
        lambda name: parse_volume_name(name, "pfs"),
        lambda since: (0, []),
        lambda paths: (frozenset(), frozenset()),
    )
    store.add(["r"])
    assert [v.name for v in listing.answer()] == ["r"]
    names = [f"r/b{number}" for number in range(NAMES)]
    started = time.monotonic()
    store.add(names)
    assert len(listing.answer()) == NAMES + 1
    store.remove(names[: NAMES // 2])
    assert [v.name for v in listing.answer()] == sorted(["r", *names[NAMES // 2 :]])
    store.add(["r/new"])
    assert len(listing.answer()) == NAMES // 2 + 2
    assert listing.last.resolved == 1  # the new name alone: r did not change
    assert time.monotonic() - started < 10  # quadratic: minutes


class Commits:
    """The part of a MetadataStore ``OnceReads`` reads of one repo's commits."""

    def __init__(self, ids: list[str]) -> None:
        self.commits = [CommitRecord(i, "r", "master", None, WHEN, "", "test") for i in ids]

    def count_commits(self, repo: str) -> int:
        return len(self.commits)

    def list_commits(self, repo: str) -> list[CommitRecord]:
        return list(self.commits)


def test_prefixes_of_a_repo_of_many_commits_are_found_by_bisection() -> None:
    """A repo of 1,000 commits (its records read at once) named by 20,000 volumes of
    commit prefixes: a List after a commit to it resolves them all; scanning every id
    for each prefix cost 2 s a 10,000."""
    rng = random.Random(7)
    ids = sorted({f"{rng.getrandbits(128):032x}" for _ in range(PREFETCH_COMMITS - 2)})
    ids += [ids[0][:8] + "0" * 24, ids[0][:8] + "f" * 24]  # a prefix shared by three
    reads = OnceReads(None, Commits(ids))  # type: ignore[arg-type]
    prefixes = [rng.choice(ids)[: rng.randrange(6, 33)] for _ in range(NAMES)]
    prefixes += [ids[0][:8], ids[0][:6], "fffffffff"]
    started = time.monotonic()
    found = [reads.matching("r", prefix) for prefix in prefixes]
    assert time.monotonic() - started < 1.5  # a scan of every id: 4 s
    checked = range(0, len(prefixes), 37)
    assert [found[n] for n in checked] == [
        sorted(i for i in ids if i.startswith(prefixes[n])) for n in checked
    ]
    trio = [ids[0][:8] + "0" * 24, ids[0], ids[0][:8] + "f" * 24]
    assert found[-3] == trio and set(trio) <= set(found[-2])
