"""The commit graph's read side: repos, branches and commits by name, refs resolved,
history walked, and what a commit changed."""

from __future__ import annotations

import heapq
import os
import stat
from pathlib import Path
from typing import NamedTuple

from pfs_volume.btrfs.changes import changes
from pfs_volume.diff import Change
from pfs_volume.errors import InvalidName, NotFound
from pfs_volume.meta import BranchRecord, CommitLinks, CommitRecord, MetadataStore, RepoRecord
from pfs_volume.names import Ref, is_commit_prefix
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.snapshots import Snapshots
from pfs_volume.safepath import walk_tree


class CommitDetails(NamedTuple):
    """A commit with what inspecting it here can tell."""

    commit: CommitRecord
    size: int | None
    """Bytes its files hold; None for a pruned commit or one not on this node."""
    changed: int | None
    """How many paths it changed; None as for ``size``."""


PAGE_FIRST = 64
"""Log index entries the first page of a history walk reads (pages double after)."""
PAGE_MOST = 1000


class _LogWalk:
    """One history walk, newest first, over the store's log index: pages of commits'
    parents ahead of the walk (``commit_links``), and the records of the commits it
    returns in one batch (``get_commits``). A parent no page holds (its time is newer
    than its child's, or the index lacks it) is read directly; so the pages decide only
    how many round trips a walk takes, never its answer."""

    def __init__(
        self, store: MetadataStore, repo: str, start: CommitRecord, limit: int | None
    ) -> None:
        self.store = store
        self.repo = repo
        self.start = start
        self.limit = limit
        self.links: dict[str, CommitLinks] = {start.id: CommitLinks.of(start)}
        self.records: dict[str, CommitRecord] = {start.id: start}
        self.cursor = (start.created, start.id)
        self.page = PAGE_FIRST if limit is None else min(max(2 * limit, PAGE_FIRST), PAGE_MOST)
        self.pages_left = True

    def walk(self, first_parent: bool) -> list[CommitRecord]:
        """The start and its ancestors (first parents only, or every parent), newest
        first: a merge's parents ordered by time, as a heap of (-time, id).

        Raises:
            NotFound: a parent's record is missing.
        """
        order: list[str] = []
        seen = {self.start.id}
        queue = [(-self.start.created.timestamp(), self.start.id)]
        while queue and (self.limit is None or len(order) < self.limit):
            current = self.links[heapq.heappop(queue)[1]]
            order.append(current.id)
            parents = current.parents[:1] if first_parent else current.parents
            new = [p for p in parents if p not in seen]
            seen.update(new)
            self._find(new)
            for parent_id in new:
                heapq.heappush(queue, (-self.links[parent_id].created.timestamp(), parent_id))
        self._read([c for c in order if c not in self.records])
        return [self.records[c] for c in order]

    def _find(self, ids: list[str]) -> None:
        """Make sure ``links`` holds ``ids``: from the next page, else directly."""
        missing = [c for c in ids if c not in self.links]
        if missing and self.pages_left:
            found = self.store.commit_links(self.repo, self.cursor, self.page)
            self.pages_left = len(found) == self.page
            if found:
                self.cursor = (found[-1].created, found[-1].id)
            self.links.update((link.id, link) for link in found)
            self.page = min(2 * self.page, PAGE_MOST)
            missing = [c for c in missing if c not in self.links]
        self._read(missing)

    def _read(self, ids: list[str]) -> None:
        for commit_id, record in zip(ids, self.store.get_commits(self.repo, ids), strict=True):
            if record is None:
                raise NotFound(f"repo {self.repo!r} has no commit {commit_id}")
            self.records[commit_id] = record
            self.links[commit_id] = CommitLinks.of(record)


class Diff(NamedTuple):
    """What changed between two commits."""

    base: CommitRecord | None
    """The commit compared against (None: the empty tree)."""
    to: CommitRecord
    changes: list[Change]


class Refs:
    """Reads of the commit graph.

    Args:
        store: the metadata store.
        layout: where snapshots live.
        snapshots: this node's snapshots (a diff fetches the ones it lacks).
    """

    def __init__(self, store: MetadataStore, layout: PoolLayout, snapshots: Snapshots) -> None:
        self.store = store
        self.layout = layout
        self.snapshots = snapshots

    def get_repo(self, name: str) -> RepoRecord:
        """The repo called ``name``. Raises NotFound."""
        record = self.store.get_repo(name)
        if record is None:
            raise NotFound(f"there is no repo {name!r}")
        return record

    def get_branch(self, repo: str, name: str) -> BranchRecord:
        """The branch. Raises NotFound."""
        record = self.store.get_branch(repo, name)
        if record is None:
            self.get_repo(repo)
            raise NotFound(f"repo {repo!r} has no branch {name!r}")
        return record

    def list_branches(self, repo: str) -> list[BranchRecord]:
        """The repo's branches. Raises NotFound for an unknown repo."""
        self.get_repo(repo)
        return self.store.list_branches(repo)

    @staticmethod
    def require_data(commit: CommitRecord) -> CommitRecord:
        """The commit, if its data is still there.

        Raises:
            NotFound: it was pruned by gc.
        """
        if commit.pruned:
            raise NotFound(
                f"commit {commit.id} of repo {commit.repo} was pruned by gc: its record "
                "stays in the log, its files are gone"
            )
        return commit

    def get_commit(self, repo: str, commit_id: str) -> CommitRecord:
        """The commit with this exact id. Raises NotFound."""
        record = self.store.get_commit(repo, commit_id)
        if record is None:
            raise NotFound(f"repo {repo!r} has no commit {commit_id}")
        return record

    def resolve_commit(self, repo: str, ref: Ref) -> CommitRecord:
        """The commit a ref names: a branch's head or a commit (prefix), then its walk
        back (``~N`` along first parents, ``^N`` to the N-th parent).

        A branch name wins over a commit prefix.

        Raises:
            NotFound: no such repo, branch or commit, or too few ancestors or parents.
            InvalidName: an ambiguous commit prefix.
        """
        self.get_repo(repo)
        commit = self._base_commit(repo, ref.base)
        for hop in ref.walk or ():
            for step in range(hop.times):
                parents = commit.parents
                if len(parents) < hop.parent:
                    have = f"{len(parents)} parent(s)" if parents else "no parent"
                    raise NotFound(
                        f"{repo}@{ref}: commit {commit.id} ({step} step(s) into {hop}) has {have}"
                    )
                commit = self.get_commit(repo, parents[hop.parent - 1])
        return commit

    def _base_commit(self, repo: str, base: str) -> CommitRecord:
        branch = self.store.get_branch(repo, base)
        if branch is not None:
            if branch.head is None:
                raise NotFound(f"branch {repo}/{base} has no commits yet")
            return self.get_commit(repo, branch.head)
        if is_commit_prefix(base):
            ids = self.store.find_commit_ids(repo, base)
            if len(ids) == 1:
                return self.get_commit(repo, ids[0])
            if len(ids) > 1:
                raise InvalidName(
                    f"the commit prefix {base!r} is ambiguous in repo {repo!r}: it matches "
                    f"{', '.join(ids)}; give more digits"
                )
        raise NotFound(f"repo {repo!r} has no branch or commit {base!r}")

    def log(
        self, repo: str, ref: Ref, limit: int | None = None, first_parent: bool = False
    ) -> list[CommitRecord]:
        """The commit ``ref`` names and its ancestors, newest first: through every parent
        of a merge (what the merged branch brought is history too), or with
        ``first_parent`` only the branch's own line. Reads the store's log index a page
        at a time ahead of the walk, and the records it returns in one batch
        (``_LogWalk``): a few round trips, not one per commit.

        An empty list for a branch with no commits yet.

        Raises:
            NotFound: no such repo, or a ref that names nothing.
        """
        if ref.plain:
            found, branch = self.store.get_repo_branch(repo, ref.base)
            if found is None:
                raise NotFound(f"there is no repo {repo!r}")
        else:
            self.get_repo(repo)
            branch = None
        if branch is not None and branch.head is None:
            return []
        # A plain branch name is its head (as ``resolve_commit`` says), read once here.
        start = (
            self.get_commit(repo, branch.head)
            if branch is not None and branch.head is not None
            else self.resolve_commit(repo, ref)
        )
        return _LogWalk(self.store, repo, start, limit).walk(first_parent)

    def diff(self, repo: str, to: Ref, base: Ref | None = None) -> Diff:
        """What changed from ``base`` (default: the parent of ``to``) to ``to``, in time
        proportional to the change.

        Raises:
            NotFound: no such repo or commit, or one whose data was pruned.
        """
        new = self.require_data(self.resolve_commit(repo, to))
        if base is not None:
            old: CommitRecord | None = self.require_data(self.resolve_commit(repo, base))
        else:
            old = self.require_data(self.get_commit(repo, new.parent)) if new.parent else None
        found = changes(
            self.snapshots.local_commit(repo, old.id) if old is not None else None,
            self.snapshots.local_commit(repo, new.id),
        )
        return Diff(old, new, found)

    def commit_details(self, repo: str, ref: Ref) -> CommitDetails:
        """A commit with the bytes its files hold and how many paths it changed (None for
        a pruned commit, and for one whose data, or whose parent's, is not on this node:
        inspecting never fetches).

        Raises:
            NotFound, InvalidName: as ``resolve_commit``.
        """
        commit = self.resolve_commit(repo, ref)
        local = [commit.id] + ([commit.parent] if commit.parent else [])
        if commit.pruned or not all(self.snapshots.snapshot_exists(repo, c) for c in local):
            return CommitDetails(commit, None, None)
        size = _apparent_size(self.layout.commit_path(repo, commit.id))
        return CommitDetails(commit, size, len(self.diff(repo, Ref(commit.id)).changes))


def _apparent_size(root: Path) -> int:
    """Bytes the files under ``root`` hold (links counted as links, not followed), at
    any depth (``walk_tree`` is iterative and opens each folder from its parent, so no
    path grows past PATH_MAX)."""
    total = 0
    for _folder, fd, name in walk_tree(root):
        info = os.lstat(name, dir_fd=fd)
        if not stat.S_ISDIR(info.st_mode):
            total += info.st_size
    return total
