"""List's answer kept between calls and brought up to date in part after a write.

Docker calls List on many of its commands; at 10,000 volumes working the whole answer
out costs 0.3 to 1.4 s (``listing``). What List shows of a volume (its mountpoint) comes
from the records of ONE repo, the one its name names (repo record, branches, commits and
their holders), and from that repo's folder in the pool (a working copy or a snapshot on
disk). Both sources say which repos changed since a cursor:

* the metadata store (``MetadataStore.changed_since``): SQLite's triggers note the repo
  of every row written (``meta/sqlite_changes.py``); in a cluster the watch of every etcd
  key notes the repo of each write, by any node (``meta/etcd_changes.py``); either may
  answer "anything" (a lost, lagging or restarted watch; a table or key kind it does not
  know), and which volume names were added, changed or removed (each read again
  alone: reading all 10,000 costs what resolving them does);
* this node's pool (``BtrfsPool.changed_paths``): the paths of every subvolume creation,
  snapshot, deletion and move, mapped to the working copies and snapshots they are, or
  to the repos whose folder holds them (``RepoService.parts_at``), or "anything" when
  they are no longer kept.

Most writes change one part of one repo (``change_log.Part``): a commit on master moves
master's record and adds a commit record and a snapshot. Each kept mountpoint remembers
the parts it was worked out from (``listing.OnceReads``), so only the volumes that read
a changed part are worked out again: ``R`` and ``R@master`` after a commit on master,
not the repo's other 999 volumes (``R/b7``, ``R@1a2b3c``), nor a name of a commit
prefix unless the new commit's id starts with that prefix.

Both cursors are read BEFORE anything they guard: a write that ends after the read is
after the cursor, so the next call sees it; one that ended before it is in what this
call reads. Then only the volumes that read a changed part, those of the repos that
changed as a whole (and the names that came or changed) are worked out again, by the
same code as a whole listing; when either source says "anything", or there is no kept
answer, everything is. So the answer is always what a whole listing would give at that
moment (``tests/integration/test_list_model.py``).

No lock: calls at once each work their answer out from the kept one they read, and the
one kept last is right for its own cursors (each was read before its work, and a call
that starts from an older cursor is told everything since it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pfs_volume.errors import PfsError
from pfs_volume.meta import MetadataStore, VolumeRecord
from pfs_volume.meta.change_log import COMMIT, Part
from pfs_volume.names import VolumeName
from pfs_volume.volumes.listing import ANY, PREFIX, VolumeInfo

NAMES_ONE_BY_ONE = 64
"""At most this many changed volume names are read one by one (``get_volume``); more are
read in one ``list_volumes``: on etcd each read is a round trip, and a repo deleted with
10,000 names on this node cost 10,000 of them (seconds) where one read of all is one."""

PoolChanges = Callable[[int], tuple[int, list[Path] | None]]
"""``BtrfsPool.changed_paths``: (the count now, the paths changed after a count)."""
PoolParts = Callable[[Iterable[Path]], tuple[frozenset[str], frozenset[Part]] | None]
"""``RepoService.parts_at``: (whole repos, parts) the paths are; None: any."""
Mountpoints = Callable[
    [Sequence[VolumeRecord]], tuple[Sequence[str | None], Sequence[frozenset[Part]]]
]
"""``listing.mountpoints``: each record's mountpoint and the parts it was worked out
from."""
Readers = Mapping[str, Mapping[tuple[str, str], frozenset[str]]]
"""By repo, by (kind, name) of a part: the volume names that read it."""


@dataclass(frozen=True)
class _Kept:
    """One answer and what it was worked out from (never changed once made)."""

    store_cursor: Hashable
    pool_count: int
    order: tuple[str, ...]
    records: Mapping[str, VolumeRecord]
    by_repo: Mapping[str, tuple[str, ...]]
    infos: Mapping[str, VolumeInfo]
    answer: tuple[VolumeInfo, ...]
    unsure: frozenset[str]
    """The names whose mountpoint could not be worked out (a passing failure:
    ``listing.mountpoints`` said None; shown as ""): the next List works them out again,
    whatever changed."""
    reads: Mapping[str, frozenset[Part]]
    """By volume name: the parts its mountpoint was worked out from."""
    readers: Readers
    """``reads`` the other way round."""


@dataclass
class ListingWork:
    """What the last call worked out (for tests and the bench): volumes resolved, and
    whether it was everything."""

    resolved: int = 0
    whole: bool = False


class KeptListing:
    """Every remembered volume with its mountpoint, as List reports it, kept and brought
    up to date by repo.

    Args:
        store: volume names and the change log of records.
        mountpoints: each record's mountpoint, in order, and the parts it was worked out
            from (``listing.mountpoints``; None when it could not be worked out now:
            shown as "", never kept).
        parse: parses a volume name (raises PfsError: a name that does not parse never
            resolves, whatever changes, so it belongs to no repo).
        pool_changes: ``BtrfsPool.changed_paths``; None keeps nothing.
        parts_at: the whole repos and the parts that pool paths are (None: any).
    """

    def __init__(
        self,
        store: MetadataStore,
        mountpoints: Mountpoints,
        parse: Callable[[str], VolumeName],
        pool_changes: PoolChanges | None,
        parts_at: PoolParts,
    ) -> None:
        self.store = store
        self.mountpoints = mountpoints
        self.parse = parse
        self.pool_changes = pool_changes
        self.parts_at = parts_at
        self.last = ListingWork()
        self._kept: _Kept | None = None

    def answer(self) -> tuple[VolumeInfo, ...]:
        """The answer as of now. Raises what the store raises (nothing is kept then)."""
        kept = self._kept
        if self.pool_changes is None:
            self.last = ListingWork()
            return self._whole(None, 0).answer
        changes = self.store.changed_since(kept.store_cursor if kept is not None else None)
        pool_count, paths = self.pool_changes(kept.pool_count if kept is not None else -1)
        if kept is None or changes.cursor is None or changes.repos is None or paths is None:
            made = self._whole(changes.cursor, pool_count)
        else:
            in_pool = self.parts_at(paths) if paths else (frozenset(), frozenset())
            if in_pool is None:
                made = self._whole(changes.cursor, pool_count)
            elif changes.nothing and in_pool == (frozenset(), frozenset()) and not kept.unsure:
                made = replace(kept, store_cursor=changes.cursor, pool_count=pool_count)
                self.last = ListingWork()
            else:
                repos, parts = changes.repos | in_pool[0], changes.parts | in_pool[1]
                made = self._update(kept, changes.cursor, pool_count, repos, parts, changes.volumes)
        if changes.cursor is not None:
            self._kept = made
        return made.answer

    def _whole(self, cursor: Hashable, pool_count: int) -> _Kept:
        records = self.store.list_volumes()
        found, depends = self.mountpoints(records)
        infos = {
            r.name: VolumeInfo(r.name, m or "", r.created, {})
            for r, m in zip(records, found, strict=True)
        }
        self.last = ListingWork(resolved=len(records), whole=True)
        by_name = {r.name: r for r in records}
        order = tuple(sorted(by_name))  # as ``_update`` keeps it (and the stores list)
        answer = tuple(infos[name] for name in order)
        unsure = frozenset(r.name for r, m in zip(records, found, strict=True) if m is None)
        by_repo = self._group(order)
        reads = {r.name: d for r, d in zip(records, depends, strict=True)}
        moves = _Moves()
        for name, read in reads.items():
            moves.note(name, frozenset(), read)
        readers = moves.applied({})
        return _Kept(
            cursor, pool_count, order, by_name, by_repo, infos, answer, unsure, reads, readers
        )

    def _update(
        self,
        kept: _Kept,
        cursor: Hashable,
        pool_count: int,
        repos: frozenset[str],
        parts: frozenset[Part],
        volumes: frozenset[str] | None,
    ) -> _Kept:
        """``kept`` with the volumes of ``repos`` and those that read ``parts`` worked
        out again, and the volume names that changed read again (all of them when
        ``volumes`` is None): new or changed ones worked out, gone ones dropped."""
        records, by_repo, infos = dict(kept.records), dict(kept.by_repo), dict(kept.infos)
        if volumes is None or len(volumes) > NAMES_ONE_BY_ONE:
            records = {r.name: r for r in self.store.list_volumes()}
            volumes = frozenset(records.keys() | kept.records.keys())
        else:
            for name in volumes:
                record = self.store.get_volume(name)
                if record is None:
                    records.pop(name, None)
                else:
                    records[name] = record
        changed = {n for n in volumes if records.get(n) != kept.records.get(n)}
        again: set[str] = set()
        # Each repo's names are made again once, not once a changed name: 10,000 names of
        # one repo made between two Lists cost 50 million steps that way (17 s).
        touched: dict[str, set[str]] = {}
        for name in changed:
            if name in records:
                again.add(name)
            else:
                del infos[name]
            with contextlib.suppress(PfsError):
                touched.setdefault(self.parse(name).repo, set()).add(name)
        for repo, names in touched.items():
            kept_names = tuple(set(by_repo.get(repo, ())) - names | (names & records.keys()))
            if kept_names:
                by_repo[repo] = kept_names
            else:  # a repo no name names any more is forgotten (a CI job's)
                by_repo.pop(repo, None)
        order = tuple(sorted(records)) if changed else kept.order
        for repo in repos:
            again.update(by_repo.get(repo, ()))
        for part in parts:
            again.update(_reading(kept.readers.get(part[0], {}), part))
        again.update(kept.unsure)
        again &= records.keys()
        chosen = [records[name] for name in again]
        found, depends = self.mountpoints(chosen)
        reads = dict(kept.reads)
        moves = _Moves()
        for record, mountpoint, read in zip(chosen, found, depends, strict=True):
            infos[record.name] = VolumeInfo(record.name, mountpoint or "", record.created, {})
            before = reads.get(record.name, frozenset())
            if before != read:
                reads[record.name] = read
                moves.note(record.name, before, read)
        for name in changed - records.keys():
            moves.note(name, reads.pop(name, frozenset()), frozenset())
        readers = moves.applied(kept.readers)
        self.last = ListingWork(resolved=len(chosen))
        answer = tuple(infos[name] for name in order)
        unsure = frozenset(r.name for r, m in zip(chosen, found, strict=True) if m is None)
        return _Kept(
            cursor, pool_count, order, records, by_repo, infos, answer, unsure, reads, readers
        )

    def _group(self, order: Sequence[str]) -> dict[str, tuple[str, ...]]:
        groups: dict[str, list[str]] = {}
        for name in order:
            with contextlib.suppress(PfsError):
                groups.setdefault(self.parse(name).repo, []).append(name)
        return {repo: tuple(names) for repo, names in groups.items()}


class _Moves:
    """The names that start or stop reading each part, by repo: ``_Kept.readers`` is
    changed by them alone (rebuilding a repo's index from all of its names cost a
    List after one Create 0.2 to 0.5 s at 10,000 names)."""

    def __init__(self) -> None:
        self.by_repo: dict[str, dict[tuple[str, str], tuple[set[str], set[str]]]] = {}

    def note(self, name: str, before: frozenset[Part], after: frozenset[Part]) -> None:
        """``name`` read ``before`` and reads ``after`` now."""
        for part in before ^ after:
            repo, kind, what = part
            starts, stops = self.by_repo.setdefault(repo, {}).setdefault(
                (kind, what), (set(), set())
            )
            (starts if part in after else stops).add(name)

    def applied(self, readers: Readers) -> Readers:
        """``readers`` with the moves made (a new mapping; ``readers`` stays as it is)."""
        made = dict(readers)
        for repo, moves in self.by_repo.items():
            index = dict(made.get(repo, {}))
            for key, (starts, stops) in moves.items():
                names = (index.get(key, frozenset()) - stops) | starts
                if names:
                    index[key] = frozenset(names)
                else:
                    index.pop(key, None)
            if index:
                made[repo] = index
            else:
                made.pop(repo, None)
        return made


def _reading(readers: Mapping[tuple[str, str], frozenset[str]], part: Part) -> set[str]:
    """The names of one repo (``readers``) whose mountpoint a change of ``part`` may
    change: those that read it, those that read anything of the repo (``ANY``) and, for
    a commit, those that read a prefix of its id (it may now match, or no longer)."""
    _, kind, name = part
    found = set(readers.get((kind, name), ()))
    found.update(readers.get((ANY, ""), ()))
    if kind == COMMIT:
        for length in range(1, len(name) + 1):
            found.update(readers.get((PREFIX, name[:length]), ()))
    return found
