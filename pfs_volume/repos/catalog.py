"""Repos and branches: made, listed, summed up, reset and deleted, and the refusals that
keep a pipeline's, a container's or uncommitted data safe from such changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from pfs_volume.branch_uses import (
    BranchUse,
    UsesLookup,
    in_use_refusal,
    owned_refusal,
    owner_of,
)
from pfs_volume.btrfs import BtrfsPool
from pfs_volume.commit_errors import CommitError, CommitErrors
from pfs_volume.errors import Conflict, InUse, InvalidRequest, PfsError
from pfs_volume.meta import BranchRecord, MetadataStore, MountRecord, RepoRecord
from pfs_volume.names import DEFAULT_BRANCH, Ref, check_component
from pfs_volume.repos.coordinator import Coordinator
from pfs_volume.repos.gc import Collector
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.locks import RepoLocks
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.working_copies import WorkingCopies
from pfs_volume.space import SpaceReserve, is_no_space

log = logging.getLogger(__name__)

MAX_DESCRIPTION = 4096


@dataclass(frozen=True)
class RepoSummary:
    """A repo with its branches and how many commits it has."""

    repo: RepoRecord
    branches: list[BranchRecord]
    commit_count: int
    mounts: list[MountRecord]
    size: int | None
    """Bytes of file data the repo's kept (not pruned) commits wrote, each counted in the
    commit that wrote it, as measured once after each commit (``repos/sizes.py``); None
    for a repo made before sizes were kept. Not what the disk holds: data a later commit
    overwrote or deleted still counts while an older commit holds it, shared (reflinked)
    data counts once, compression is not seen, and uncommitted data does not count."""
    size_unmeasured: int = 0
    """Kept commits not in ``size`` (not measured yet, or not measurable here)."""
    uncommitted: frozenset[str] = frozenset()
    """Branches whose working copy here holds changes no commit holds."""
    commit_errors: dict[str, CommitError] = field(default_factory=dict)
    """The last failed commit of branches that have not committed since, by branch."""


class Reset(NamedTuple):
    """A branch moved by ``reset_branch``."""

    old_head: str | None
    branch: BranchRecord
    """The branch as it is now."""


class Catalog:
    """The repos and branches of one node's pool.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        layout: where repos live.
        locks: the branch and repo locks.
        refs: reads of repos, branches and commits.
        working_copies: the branches' working copies.
        collector: deletes a deleted repo's data, now or later.
        coordinator: placement and the branches' write locks.
        space: the pool's reserve (deletions may use it on a full pool).
        commit_errors: the branches' last failed commits.
        uses: which pipelines read or write a repo's branches.
        clock: returns the current UTC time.
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        locks: RepoLocks,
        refs: Refs,
        working_copies: WorkingCopies,
        collector: Collector,
        coordinator: Coordinator,
        space: SpaceReserve,
        commit_errors: CommitErrors,
        uses: UsesLookup,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.locks = locks
        self.refs = refs
        self.working_copies = working_copies
        self.collector = collector
        self.coordinator = coordinator
        self.space = space
        self.commit_errors = commit_errors
        self.uses = uses
        self.clock = clock

    # repos

    def create_repo(
        self, name: str, description: str = "", replicas: int | None = None
    ) -> RepoRecord:
        """Create an empty repo with an empty ``master`` branch, placed on ``replicas``
        nodes (default: the cluster's default).

        Raises:
            InvalidName: for a bad name. InvalidRequest: a bad description or replica
            count. Conflict: when it exists.
        """
        check_component(name, "repo")
        bad = next((c for c in description if ord(c) < 32 and c not in "\n\t"), None)
        if bad is not None:
            raise InvalidRequest(
                f"the description holds the control character {bad!r}; text, tabs and "
                "line breaks are accepted"
            )
        if len(description) > MAX_DESCRIPTION:
            raise InvalidRequest(
                f"the description is {len(description)} characters long; at most "
                f"{MAX_DESCRIPTION} are allowed"
            )
        with self.locks.repo_lock(name):
            if name in self.store.list_deleted_repos():
                self.collector.finish_delete(name)
            placement = self.coordinator.place(name, replicas)
            record = RepoRecord(
                name=name,
                created=self.clock(),
                description=description,
                replicas=placement.replicas,
                placement=placement.nodes,
            )
            master = BranchRecord(repo=name, name=DEFAULT_BRANCH, head=None, created=record.created)
            self.store.create_repo(record, master)
            for sub in ("branches", "commits"):
                (self.layout.repo_dir(name) / sub).mkdir(parents=True, exist_ok=True)
            log.info("repo=%s created", name)
            return record

    def ensure_repo(self, name: str) -> RepoRecord:
        """The repo called ``name``, created empty if it does not exist.

        Raises:
            InvalidName: for a bad name.
        """
        with self.locks.repo_lock(name):
            return self.store.get_repo(name) or self.create_repo(name)

    def summary(self, name: str) -> RepoSummary:
        """A repo with its branches, commit count, size as the store keeps it, mounts,
        the branches with uncommitted changes and their last commit errors. Raises
        NotFound."""
        repo = self.refs.get_repo(name)
        branches = self.store.list_branches(name)
        size = self.store.repo_size(name)
        return RepoSummary(
            repo=repo,
            branches=branches,
            commit_count=self.store.count_commits(name),
            mounts=self.store.list_mounts(name),
            size=size.bytes if size is not None else None,
            size_unmeasured=size.unmeasured if size is not None else 0,
            uncommitted=frozenset(b.name for b in branches if self.working_copies.is_dirty(b)),
            commit_errors=self.commit_errors.of_repo(name),
        )

    def delete_repo(self, name: str) -> None:
        """Delete a repo with all its branches, commits and data.

        Raises:
            NotFound: no such repo. InUse: a container has one of its volumes mounted,
                or an export reads it.
            Conflict: a pipeline reads or writes it (each named), or a working copy
                holds changes that no commit holds (invariant 1).
            PoolFull: the pool is full and its reserve is gone already.
        """
        records_gone = False

        def attempt() -> None:
            nonlocal records_gone
            with self.locks.repo_lock(name):
                if not records_gone:  # else a retry: only the data is left to delete
                    self._delete_repo(name)
                    records_gone = True
                try:
                    self.collector.finish_delete(name)
                except PfsError as exc:
                    if is_no_space(exc):
                        raise
                    # btrfs refuses to delete a snapshot a peer's send reads: the repo
                    # is gone, and its data goes when the send ends (``drain_pending``).
                    self.collector.defer_repo_deletion(name)
                    log.warning(
                        "repo=%s deleted; its data is deleted once nothing reads it: %s",
                        name,
                        exc,
                    )
            for branch in self.commit_errors.of_repo(name):
                self.commit_errors.clear(name, branch)
            log.info("repo=%s deleted", name)

        self.space.freeing(f"deleting repo {name}", attempt, after_deletes=True)
        self.collector.drain_pending()

    def _delete_repo(self, name: str) -> None:
        """Check that the repo may be deleted and delete its records (a tombstone says
        its data is still to go)."""
        with self.locks.repo_lock(name):
            self.refs.get_repo(name)
            users = self.uses(name)
            if users:
                raise in_use_refusal(f"repo {name!r}", users)
            if self.collector.reads(name):
                raise InUse(
                    f"repo {name!r} is being exported (its snapshots are being read); "
                    "delete it once the export ends"
                )
            mounts = self.store.list_mounts(name)
            if mounts:
                volumes = sorted({m.volume for m in mounts})
                raise InUse(
                    f"repo {name!r} is mounted by {len(mounts)} container(s) through "
                    f"{', '.join(volumes)}; stop them first"
                )
            dirty = [
                b.name for b in self.store.list_branches(name) if self.working_copies.is_dirty(b)
            ]
            if dirty:
                raise Conflict(
                    f"repo {name!r} has changes no commit holds, in the working copy of "
                    f"branch(es) {', '.join(dirty)}; mount and unmount them to commit first"
                )
            self.store.delete_repo(name)

    # branches

    def ensure_branch(self, repo: str, name: str, start: str | None) -> BranchRecord:
        """The branch, created with head ``start`` (a commit id, or None) if absent.

        Its working copy is made on first use (``working_copy``), so a crash between the
        two leaves nothing to clean up.

        Raises:
            InvalidName: for a bad name.
        """
        check_component(name, "branch")
        with self.locks.repo_lock(repo):
            existing = self.store.get_branch(repo, name)
            if existing is not None:
                return existing
            record = BranchRecord(repo=repo, name=name, head=start, created=self.clock())
            self.store.create_branch(record)
            log.info("repo=%s branch=%s created at commit=%s", repo, name, start)
            return record

    def create_branch(self, repo: str, name: str, start: Ref | None = None) -> BranchRecord:
        """Create branch ``name`` at the commit ``start`` names (default: master's head).

        Raises:
            InvalidName, NotFound: a bad name or a ref that names nothing.
            Conflict: the branch exists.
        """
        check_component(name, "branch")
        with self.locks.repo_lock(repo):
            self.refs.get_repo(repo)
            if self.store.get_branch(repo, name) is not None:
                raise Conflict(f"branch {repo}/{name} exists already")
            if start is not None:
                head: str | None = self.refs.require_data(self.refs.resolve_commit(repo, start)).id
            else:
                master = self.store.get_branch(repo, DEFAULT_BRANCH)
                head = master.head if master is not None else None
            return self.ensure_branch(repo, name, head)

    def delete_branch(self, repo: str, name: str) -> None:
        """Delete a branch and its working copy; its commits stay, reachable by id.

        Raises:
            NotFound: no such branch. InUse: it is mounted.
            Conflict: a pipeline reads or writes it (each named), or its working copy
                holds changes no commit holds.
            PoolFull: the pool is full and its reserve is gone already.
        """
        self.space.freeing(
            f"deleting branch {repo}/{name}",
            lambda: self._delete_branch(repo, name),
            after_deletes=True,
        )

    def _delete_branch(self, repo: str, name: str) -> None:
        with self.locks.branch_lock(repo, name), self.locks.repo_lock(repo):
            self.refs.get_branch(repo, name)
            users = [u for u in self.uses(repo) if u.branch == name]
            if users:
                raise in_use_refusal(f"branch {repo}/{name}", users)
            self.refuse_if_busy(repo, name, "delete")
            self.working_copies.delete(repo, name)
            self.store.delete_branch(repo, name)
            self.commit_errors.clear(repo, name)
            log.info("repo=%s branch=%s deleted", repo, name)

    def reset_branch(self, repo: str, name: str, ref: Ref) -> Reset:
        """Move a branch's head to the commit ``ref`` names; the old head stays reachable
        by id. Returns the old head and the branch as it is now.

        Raises:
            NotFound: no such branch or commit. InUse: the branch is mounted.
            Conflict: its working copy holds changes no commit holds, or the head moved.
        """
        with self.locks.branch_lock(repo, name), self.locks.repo_lock(repo):
            old = self.refs.get_branch(repo, name)
            target = self.refs.require_data(self.refs.resolve_commit(repo, ref))
            self.refuse_if_busy(repo, name, "reset")
            # The working copy goes first: it is clean (checked above), so a crash before
            # the head moves loses nothing, and the next mount makes it from the new head.
            self.working_copies.delete(repo, name)
            self.store.move_head(
                repo, name, old.head, target.id, self.coordinator.acquire(repo, name)
            )
            log.info("repo=%s branch=%s reset from %s to %s", repo, name, old.head, target.id)
            return Reset(old.head, self.refs.get_branch(repo, name))

    def refuse_if_busy(self, repo: str, branch: str, verb: str) -> None:
        """Refuse to change a branch that a pipeline owns, that is mounted or that holds
        uncommitted changes.

        Raises:
            Conflict: it is a pipeline's output, or its working copy is dirty.
            InUse: it is mounted.
        """
        self.refuse_if_owned(repo, branch, verb)
        mounts = [m for m in self.store.list_mounts(repo) if m.branch == branch]
        if mounts:
            raise InUse(
                f"cannot {verb} branch {repo}/{branch}: {len(mounts)} container(s) have it "
                "mounted; stop them first"
            )
        if self.working_copies.is_dirty(self.refs.get_branch(repo, branch)):
            raise Conflict(
                f"cannot {verb} branch {repo}/{branch}: its working copy holds changes no "
                f"commit holds; commit them first: pfs commit {repo}/{branch}"
            )

    def refuse_if_owned(self, repo: str, branch: str, verb: str) -> None:
        """Refuse a write from outside a pipeline to its output branch.

        Raises:
            Conflict: naming the pipeline, and how to read or branch from its output.
        """
        pipeline = owner_of(self.uses(repo), repo, branch)
        if pipeline is not None:
            raise owned_refusal(pipeline, repo, branch, verb)

    def users(self, repo: str, branch: str | None = None) -> list[BranchUse]:
        """The pipelines' uses of a repo (or of one of its branches)."""
        return [u for u in self.uses(repo) if branch is None or u.branch == branch]
