"""Docker's List: every remembered volume with its mountpoint, from a few reads.

A volume's mountpoint is its target's path when that exists now, else "" (as Get and
Path say). Resolving each name on its own read the same repo, branches and commits again
for every volume (about 50 µs a volume: half a second at 10,000). Here the names are
resolved by the same code (``VolumeTargets``) over a view of the commit graph that reads
each thing once for the whole listing: a repo record, a repo's branches (one query), a
commit record, whether a working copy or snapshot is on disk. Nothing is kept here
between calls: ``VolumeService`` keeps the answer and, after a write, hands here only the
volumes that read what changed (``kept_listing``: each name's reads are noted here, by
``OnceReads``), so whatever changed a mountpoint (a working copy made or retired, a
commit fetched or pruned, a repo or branch deleted here or on another node) shows in the
next List.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pfs_volume.errors import Busy, InvalidName, NotFound, PfsError, StorageError, Unavailable
from pfs_volume.meta import BranchRecord, CommitRecord, MetadataStore, VolumeRecord
from pfs_volume.meta.change_log import BRANCH, COMMIT, COPY, SNAPSHOT, Part
from pfs_volume.names import Ref, VolumeName, is_commit_prefix
from pfs_volume.repos import RepoService
from pfs_volume.volumes.targets import VolumeTargets

COMMIT_ID_LENGTH = 32
MIN_PREFIX = 6
"""The shortest commit prefix a name may give (``is_commit_prefix``)."""
PREFETCH_COMMITS = 1000
"""A repo with at most this many commits has every commit record read in one request the
first time a listing needs one of them: on etcd each record read is a round trip, and a
List after a commit resolves every volume of that repo again (its commits, and the
prefixes that name them, about 40 reads for a repo of 20 commits: 0.2 s)."""
PREFIX = "prefix"
"""A part read by a commit prefix (``OnceReads.matching``): the set of the repo's commits
whose ids start with it, which a ``COMMIT`` part of such an id changes."""
ANY = "any"
"""A part that any change of the repo changes (``OnceReads.resolve_commit``'s walks)."""
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class VolumeInfo:
    """What Docker's Get and List report of one volume."""

    name: str
    mountpoint: str
    created: datetime | None
    status: Mapping[str, Any]


def volume_infos(repos: RepoService, store: MetadataStore, prefix: str) -> tuple[VolumeInfo, ...]:
    """Every remembered volume with its mountpoint (``mountpoints``), as List reports it."""
    volumes = store.list_volumes()
    found, _ = mountpoints(repos, store, prefix, volumes)
    return tuple(
        VolumeInfo(v.name, m or "", v.created, {}) for v, m in zip(volumes, found, strict=True)
    )


PASSING_FAILURES = (Unavailable, StorageError, Busy)
"""Errors that say nothing of what a name means, only that it could not be read now."""


def mountpoints(
    repos: RepoService, store: MetadataStore, prefix: str, volumes: Sequence[VolumeRecord]
) -> tuple[list[str | None], list[frozenset[Part]]]:
    """Each volume's mountpoint, in order: its target's path when it exists in the pool
    now, "" when it does not or when the name means nothing now (an error); None when it
    could not be worked out now (``PASSING_FAILURES``: List shows "" and must not keep
    that, the next List works it out again). And the parts of its repo that each
    mountpoint was worked out from (``OnceReads.read``): while none of them changes, nor
    the repo as a whole, the mountpoint stays what it is."""
    reads = OnceReads(repos, store)
    targets = VolumeTargets(repos, prefix, reads=reads)
    found: list[str | None] = [""] * len(volumes)
    depends: list[frozenset[Part]] = [frozenset()] * len(volumes)
    # Names that differ only by the driver's prefix mean the same: resolved once.
    meaning: dict[VolumeName, str | None] = {}
    read: dict[VolumeName, frozenset[Part]] = {}
    # Shorter names first: a commit prefix that matched one commit answers for the longer
    # prefixes after it (``OnceReads.matching``). The order changes no answer.
    for index in sorted(range(len(volumes)), key=lambda i: len(volumes[i].name)):
        try:
            parsed = targets.parse(volumes[index].name)
        except PfsError:
            continue  # a name that does not parse never means anything
        if parsed not in meaning:
            reads.read = set()
            meaning[parsed] = _existing_path(targets, parsed)
            read[parsed] = frozenset(reads.read)
        found[index] = meaning[parsed]
        depends[index] = read[parsed]
    return found, depends


def _existing_path(targets: VolumeTargets, parsed: VolumeName) -> str | None:
    """``mountpoints`` of one name: "" when it means nothing now, None when that could
    not be worked out now."""
    try:
        return targets.existing_path(targets.resolve_parsed(parsed))
    except PASSING_FAILURES:
        return None
    except PfsError:
        return ""


class OnceReads:
    """The reads of ``TargetReads``, each made once per object: a repo's branches come
    in one query, and a commit, a working copy or a snapshot is looked at once however
    many names lead to it. Meant to live for one listing.

    Every call also notes in ``read`` the part of the repo its answer comes from (as
    ``Part``, whether it was read now or earlier): a branch's record (there or not), a
    commit's record, every commit whose id starts with a prefix (``PREFIX``, a name
    matched by ``commit_matches``), a working copy, a snapshot, or anything of the repo
    (``ANY``: a walk along parents reads many commits)."""

    def __init__(self, repos: RepoService, store: MetadataStore) -> None:
        self.repos = repos
        self.store = store
        self.read: set[Part] = set()
        self._ids: dict[tuple[str, str], list[str]] = {}
        self._paths: dict[tuple[str, str | None, str | None], Path] = {}
        self._repos: dict[str, bool] = {}
        self._branches: dict[str, dict[str, BranchRecord]] = {}
        self._commits: dict[tuple[str, str], CommitRecord | None] = {}
        self._every_commit: dict[str, dict[str, CommitRecord] | None] = {}
        self._ids_in_order: dict[str, list[str] | None] = {}
        self._refs: dict[tuple[str, str], CommitRecord | PfsError] = {}
        self._copies: dict[tuple[str, str], bool] = {}
        self._snapshots: dict[tuple[str, str], bool] = {}

    def repo_exists(self, name: str) -> bool:
        return _once(self._repos, name, lambda: self.repos.repo_exists(name))

    def find_branch(self, repo: str, name: str) -> BranchRecord | None:
        self.read.add((repo, BRANCH, name))
        branches = _once(
            self._branches, repo, lambda: {b.name: b for b in self.repos.list_branches(repo)}
        )
        return branches.get(name)

    def resolve_commit(self, repo: str, ref: Ref) -> CommitRecord:
        """As ``RepoService.resolve_commit``: a branch's head or a commit (prefix) from the
        records read here; a walk (``~N``, ``^N``) is handed to it, once per ref."""
        if not self.repo_exists(repo):
            raise NotFound(f"there is no repo {repo!r}")
        branch = self.find_branch(repo, ref.base) if ref.plain else None
        if branch is not None:
            if branch.head is None:
                raise NotFound(f"branch {repo}/{ref.base} has no commits yet")
            return self._commit(repo, branch.head)
        if ref.plain and is_commit_prefix(ref.base):
            if len(ref.base) == COMMIT_ID_LENGTH:
                return self._commit(repo, ref.base)
            ids = self.matching(repo, ref.base)
            if len(ids) == 1:
                return self._commit(repo, ids[0])
            if len(ids) > 1:
                raise InvalidName(f"the commit prefix {ref.base!r} is ambiguous in {repo!r}")
            raise NotFound(f"repo {repo!r} has no branch or commit {ref.base!r}")
        if ref.plain:  # neither a branch nor a commit prefix: nothing (the branch is read)
            raise NotFound(f"repo {repo!r} has no branch or commit {ref.base!r}")
        key = (repo, str(ref))
        self.read.add((repo, ANY, ""))
        found = _once(self._refs, key, lambda: _or_error(self.repos.resolve_commit, repo, ref))
        if isinstance(found, PfsError):
            raise found
        return found

    def require_data(self, commit: CommitRecord) -> CommitRecord:
        return self.repos.require_data(commit)

    def matching(self, repo: str, prefix: str) -> list[str]:
        """The ids of the repo's commits that start with ``prefix`` (up to the store's
        limit, enough to tell one from many). Once a shorter prefix matched at most one
        commit, it answers for every longer one: their matches are among its."""
        self.read.add((repo, PREFIX, prefix))
        every = self._sorted_ids(repo)
        if every is not None:  # the ids from the first that sorts at or after prefix
            found = []
            for index in range(bisect.bisect_left(every, prefix), len(every)):
                if not every[index].startswith(prefix):
                    break
                found.append(every[index])
            return found
        for length in range(MIN_PREFIX, len(prefix)):
            shorter = self._ids.get((repo, prefix[:length]))
            if shorter is not None and len(shorter) <= 1:
                return [i for i in shorter if i.startswith(prefix)]
        key = (repo, prefix)
        return _once(self._ids, key, lambda: self.store.find_commit_ids(repo, prefix))

    def branch_path(self, repo: str, branch: str) -> Path:
        key = (repo, branch, None)
        return _once(self._paths, key, lambda: self.repos.branch_path(repo, branch))

    def commit_path(self, repo: str, commit_id: str) -> Path:
        key = (repo, None, commit_id)
        return _once(self._paths, key, lambda: self.repos.commit_path(repo, commit_id))

    def is_working_copy(self, repo: str, branch: str) -> bool:
        key = (repo, branch)
        self.read.add((repo, COPY, branch))
        return _once(self._copies, key, lambda: self.repos.is_working_copy(repo, branch))

    def snapshot_exists(self, repo: str, commit_id: str) -> bool:
        """As ``RepoService.snapshot_exists``: this node holds the commit (its record
        says so) and its read-only snapshot is on disk."""

        def look() -> bool:
            record = self._record(repo, commit_id)
            return (
                record is not None
                and self.repos.holds(record)
                and self.repos.snapshot_on_disk(repo, commit_id)
            )

        self.read.update(((repo, COMMIT, commit_id), (repo, SNAPSHOT, commit_id)))
        return _once(self._snapshots, (repo, commit_id), look)

    def _all_commits(self, repo: str) -> dict[str, CommitRecord] | None:
        """Every commit record of a repo of at most ``PREFETCH_COMMITS``, by id (read
        once); None for a larger repo (its records are read one by one)."""

        def read() -> dict[str, CommitRecord] | None:
            if self.store.count_commits(repo) > PREFETCH_COMMITS:
                return None
            return {c.id: c for c in self.store.list_commits(repo)}

        return _once(self._every_commit, repo, read)

    def _sorted_ids(self, repo: str) -> list[str] | None:
        """``_all_commits``'s ids in order (a prefix's matches are then found by
        bisection: a scan of them all for each of 10,000 names cost 2 s)."""

        def ids() -> list[str] | None:
            every = self._all_commits(repo)
            return None if every is None else sorted(every)

        return _once(self._ids_in_order, repo, ids)

    def _record(self, repo: str, commit_id: str) -> CommitRecord | None:
        every = self._all_commits(repo)
        if every is not None:
            return every.get(commit_id)
        key = (repo, commit_id)
        return _once(self._commits, key, lambda: _or_none(self.repos.get_commit, repo, commit_id))

    def _commit(self, repo: str, commit_id: str) -> CommitRecord:
        self.read.add((repo, COMMIT, commit_id))
        record = self._record(repo, commit_id)
        if record is None:
            raise NotFound(f"repo {repo!r} has no commit {commit_id}")
        return record


def _once(cache: dict[K, V], key: K, read: Callable[[], V]) -> V:
    if key not in cache:
        cache[key] = read()
    return cache[key]


def _or_error(
    resolve: Callable[[str, Ref], CommitRecord], repo: str, ref: Ref
) -> CommitRecord | PfsError:
    try:
        return resolve(repo, ref)
    except PfsError as exc:
        return exc


def _or_none(
    get: Callable[[str, str], CommitRecord], repo: str, commit_id: str
) -> CommitRecord | None:
    try:
        return get(repo, commit_id)
    except NotFound:
        return None
