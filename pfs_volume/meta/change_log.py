"""Which repos changed since a point: what lets List update its kept answer in part.

List's answer (``volumes/listing.py``) is made of per-volume parts, and every part
depends on the records of one repo (the volume's own: its repo record, branches, commits)
and on that repo's folder in the pool. A store that knows what each write touched can
say which parts to work out again instead of all of them: a whole repo, or one ``Part``
of it (a branch record, a commit record, a working copy, a snapshot), which only the
volumes that read that part depend on (a commit on master touches master's record and a
new commit, not the 999 other volumes of the repo).

``ChangeLog`` numbers the writes it is told of (``note``) and answers, for an earlier
number, the repos, parts and volume names touched after it (``since``). A write that
touches something List may read but that belongs to no one repo notes ``everything``:
``since`` then answers None for any earlier number, and List works everything out again.
Noting more than was written costs only work; noting less would lose a change, so a
writer notes BEFORE its write is visible (or while it holds the lock the reader needs),
and a reader takes its number BEFORE it reads what the number guards.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

BRANCH = "branch"
"""A branch's record (its head; the branch there or not)."""
COMMIT = "commit"
"""A commit's record (there or not, pruned, its holders); also what every prefix of its id
matches."""
COPY = "copy"
"""A branch's working copy in this node's pool (there or not)."""
SNAPSHOT = "snapshot"
"""A commit's snapshot in this node's pool (there or not, read-only or not)."""
Part = tuple[str, str, str]
"""One thing of a repo that a volume's mountpoint may depend on: (repo, kind, name), the
kind one of ``BRANCH``, ``COMMIT``, ``COPY``, ``SNAPSHOT`` and the name a branch's or a
commit id."""

NAMES_KEPT = 100_000
"""How many repo and volume names each (``ChangeLog``) remembers the last write of: a
daemon that sees ever new names (a volume per CI job) would otherwise keep every one
for as long as it runs. A name forgotten makes ``since`` answer None for the numbers
before its last write (more work for List, never a lost change)."""


@dataclass(frozen=True)
class StoreChanges:
    """What changed in the metadata store since a cursor (``MetadataStore.changed_since``).

    Attributes:
        cursor: to hand to the next call; None when the store can tell nothing (nothing
            may then be kept).
        repos: the repos any of whose records may have changed; None: anything may
            have changed.
        volumes: the volume names this node remembers that were added, changed or
            removed; None: any may have been.
        parts: the parts of other repos that changed (``Part``); meaningless when
            ``repos`` is None.
    """

    cursor: Hashable | None
    repos: frozenset[str] | None
    volumes: frozenset[str] | None
    parts: frozenset[Part] = frozenset()

    @property
    def nothing(self) -> bool:
        """True when nothing List shows changed."""
        return self.repos == frozenset() and self.volumes == frozenset() and not self.parts


Since = tuple[frozenset[str], frozenset[str], frozenset[Part]] | tuple[None, None, None]
"""``ChangeLog.since``: (repos, volume names, parts), or Nones for anything."""


class ChangeLog:
    """The repos, parts and volume names touched by each noted write, by number (not
    thread-safe: the caller holds the lock its writers hold). Its memory is one entry a
    repo, part or volume name touched, up to ``limit`` of each (the oldest forgotten
    first)."""

    def __init__(self, limit: int = NAMES_KEPT) -> None:
        self.limit = limit
        self.number = 0
        """The number of the last noted write (0: none yet)."""
        self._repos: OrderedDict[str, int] = OrderedDict()
        self._volumes: OrderedDict[str, int] = OrderedDict()
        self._parts: OrderedDict[Part, int] = OrderedDict()
        self._evicted: OrderedDict[str, int] = OrderedDict()
        """The repos of forgotten parts, with the number of the last such part's write."""
        self._everything = 0
        self._identity = object()

    def note(
        self,
        repos: Iterable[str] = (),
        volumes: Iterable[str] = (),
        everything: bool = False,
        parts: Iterable[Part] = (),
    ) -> None:
        """Count one write that touched ``repos`` (as a whole), ``volumes`` (names) and
        ``parts`` of repos, or anything."""
        self.number += 1
        touches: tuple[tuple[OrderedDict[Any, int], Iterable[Hashable]], ...] = (
            (self._repos, repos),
            (self._volumes, volumes),
            (self._parts, parts),
        )
        for touched, names in touches:
            for name in names:
                touched[name] = self.number
                touched.move_to_end(name)
            while len(touched) > self.limit:
                forgotten, last = touched.popitem(last=False)
                if touched is self._parts:
                    # A part forgotten stands for its whole repo from then on (a gc or
                    # repo delete of many commits between two Lists): its numbers come
                    # in order, so ``_evicted`` stays ordered as ``_after`` needs.
                    self._evicted[forgotten[0]] = last
                    self._evicted.move_to_end(forgotten[0])
                    if len(self._evicted) <= self.limit:
                        continue
                    _, last = self._evicted.popitem(last=False)
                self._everything = max(self._everything, last)
        if everything:
            self._everything = self.number

    def since(self, number: int) -> Since:
        """(the repos, the volume names, the parts) touched after write ``number``;
        Nones for anything. Costs what changed, not what is kept: newest first."""
        if self._everything > number or number > self.number:
            return None, None, None
        return (
            _after(self._repos, number) | _after(self._evicted, number),
            _after(self._volumes, number),
            _after(self._parts, number),
        )

    def changes(self, cursor: Hashable | None) -> StoreChanges:
        """``since`` the number in ``cursor`` (one this log gave: else anything changed),
        with the cursor of now."""
        found: Since = (None, None, None)
        if isinstance(cursor, tuple) and len(cursor) == 2 and cursor[0] is self._identity:
            found = self.since(cursor[1])
        repos, volumes, parts = found
        return StoreChanges((self._identity, self.number), repos, volumes, parts or frozenset())


def _after(touched: OrderedDict[T, int], number: int) -> frozenset[T]:
    found: list[T] = []
    for name, last in reversed(touched.items()):
        if last <= number:
            break
        found.append(name)
    return frozenset(found)
