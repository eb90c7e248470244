"""Branches' writable working copies: made from the head on first use, checked for
changes no commit holds, retired when another node moved the head, set aside (never
deleted while dirty, invariant 1) and dropped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import Conflict, InUse
from pfs_volume.meta import BranchRecord, MetadataStore
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.locks import RepoLocks
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.snapshots import Snapshots
from pfs_volume.space import SpaceReserve

log = logging.getLogger(__name__)


class WorkingCopies:
    """The working copies of one node's pool.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        layout: where working copies live.
        locks: the branch and repo locks.
        snapshots: where a working copy is made from.
        refs: branch records.
        space: the pool's reserve (a full pool is reported as such).
        clock: returns the current UTC time.
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        locks: RepoLocks,
        snapshots: Snapshots,
        refs: Refs,
        space: SpaceReserve,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.locks = locks
        self.snapshots = snapshots
        self.refs = refs
        self.space = space
        self.clock = clock

    def exists(self, repo: str, branch: str) -> bool:
        """True when the branch's working copy has been made."""
        return self.pool.is_subvolume(self.layout.branch_path(repo, branch))

    def is_dirty(self, branch: BranchRecord) -> bool:
        """True when the branch's working copy holds changes no commit holds."""
        path = self.layout.branch_path(branch.repo, branch.name)
        return self.pool.is_subvolume(path) and self.pool.changed_since(
            path, branch.clean_generation
        )

    def has_uncommitted_changes(self, repo: str, branch: str) -> bool:
        """True when the branch's working copy here holds changes no commit holds."""
        record = self.store.get_branch(repo, branch)
        return record is not None and self.is_dirty(record)

    def mark_clean(self, repo: str, branch: str, head: str | None) -> None:
        """Record the branch's working copy, as it is now, as holding just ``head``.
        Raises StorageError, Unavailable."""
        path = self.layout.branch_path(repo, branch)
        self.store.set_clean_generation(repo, branch, self.pool.generation(path), head)

    @staticmethod
    def is_stale(record: BranchRecord) -> bool:
        """True when this node's working copy was made from or committed as another
        commit than the head (another node has written the branch since)."""
        return record.clean_generation is not None and record.working_base != record.head

    def working_copy(self, repo: str, branch: str) -> Path:
        """The branch's working copy, made from its head (or empty) if it does not exist.

        Raises:
            NotFound: no such branch, or its head is held by no node.
            Conflict: a stale copy is still mounted. PoolFull, StorageError.
        """
        path = self.layout.branch_path(repo, branch)
        with (
            self.locks.branch_lock(repo, branch),
            self.locks.repo_lock(repo),
            self.space.reporting(f"making the working copy of {repo}/{branch}"),
        ):
            record = self.refs.get_branch(repo, branch)
            if self.pool.is_subvolume(path):
                if not self.is_stale(record):
                    return path
                self._retire_stale(record)
            source = (
                self.snapshots.local_commit(repo, record.head) if record.head is not None else None
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            if source is None:
                self.pool.create_subvolume(path)
            else:
                self.pool.snapshot(source, path, readonly=False)
            try:
                self.store.set_clean_generation(
                    repo, branch, self.pool.generation(path), record.head
                )
            except BaseException:
                # Not recorded as clean, it would look changed for good (put, rm, reset
                # and delete refused); it holds only the head, so it goes.
                self.pool.delete_subvolume(path)
                raise
            log.info("repo=%s branch=%s working copy made at %s", repo, branch, path)
            return path

    def _retire_stale(self, record: BranchRecord) -> None:
        """Drop a stale working copy; one holding changes no commit holds (a writer
        fenced off by another node) is moved to ``detached/``, never deleted."""
        users = [m for m in self.store.list_mounts(record.repo) if m.branch == record.name]
        if users:
            raise Conflict(
                f"branch {record.repo}/{record.name} moved to commit {record.head} on another "
                f"node while {len(users)} container(s) here still use this node's older "
                "working copy; stop them first (their changes are kept, not committed)"
            )
        keep = self._set_aside(record)
        if keep is not None:
            log.warning(
                "repo=%s branch=%s working copy held changes on top of commit=%s, but another "
                "node moved the head to %s: the changes were kept in %s, not committed",
                record.repo,
                record.name,
                record.working_base,
                record.head,
                keep,
            )

    def _set_aside(self, record: BranchRecord) -> Path | None:
        """Take a branch's working copy out of the way: a clean one is deleted, one
        holding changes no commit holds is moved to ``detached/`` (never deleted,
        invariant 1). Returns where it was kept, or None when it was clean. The caller
        holds the branch's lock."""
        path = self.layout.branch_path(record.repo, record.name)
        if not self.pool.changed_since(path, record.clean_generation):
            self.pool.delete_subvolume(path)
            return None
        base = (record.working_base or "empty")[:12]
        keep = self.layout.detached_path(record.repo, record.name, base, self.clock())
        keep.parent.mkdir(parents=True, exist_ok=True)
        self.pool.move(path, keep)
        return keep

    def set_aside(self, repo: str, branch: str, why: str) -> Path | None:
        """Before a branch's working copy is replaced whole (a pipeline's output): a
        clean copy is deleted, a dirty one moved to ``detached/`` and logged with
        ``why``. Returns where a dirty copy was kept, or None.

        Raises:
            InUse: the branch is mounted.
        """
        with self.locks.branch_lock(repo, branch), self.locks.repo_lock(repo):
            record = self.refs.get_branch(repo, branch)
            path = self.layout.branch_path(repo, branch)
            if not self.pool.is_subvolume(path):
                return None
            mounts = [m for m in self.store.list_mounts(repo) if m.branch == branch]
            if mounts:
                raise InUse(
                    f"branch {repo}/{branch} is mounted by {len(mounts)} container(s); "
                    "its working copy cannot be replaced"
                )
            keep = self._set_aside(record)
            if keep is not None:
                log.warning(
                    "repo=%s branch=%s working copy held changes no commit holds (%s): "
                    "they were kept in %s, not committed",
                    repo,
                    branch,
                    why,
                    keep,
                )
            return keep

    def delete(self, repo: str, branch: str) -> None:
        """Delete the branch's working copy if it exists; the caller has checked that it
        holds no change no commit holds and holds the branch's lock."""
        path = self.layout.branch_path(repo, branch)
        if self.pool.is_subvolume(path):
            self.pool.delete_subvolume(path)

    def drop(self, repo: str, branch: str) -> None:
        """Delete a branch's CLEAN working copy after a change to it failed half way; the
        next use makes it again from the head. Only for a copy that held no uncommitted
        change before the failed change began (merge and revert check that first)."""
        path = self.layout.branch_path(repo, branch)
        with self.locks.branch_lock(repo, branch):
            if self.pool.is_subvolume(path):
                self.pool.delete_subvolume(path)
                log.warning("repo=%s branch=%s working copy dropped after a failure", repo, branch)
