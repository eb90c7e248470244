"""The commit protocol and its crash recovery, side by side.

A commit is made in three steps, so that a crash at any point leaves either no commit or
a whole one (DESIGN.md, invariant 2): record an intent, snapshot the working copy
read-only, then in one metadata transaction write the commit record, move the head by
compare-and-swap and release the mount that asked for it. ``recover_intent`` finishes or
undoes what a crash interrupted; it never deletes a working copy.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.commit_errors import CommitErrors
from pfs_volume.errors import Conflict, LeaseLost, PfsError, Unavailable
from pfs_volume.failpoints import failpoint
from pfs_volume.meta import CommitIntent, CommitRecord, MetadataStore
from pfs_volume.repos.catalog import Catalog
from pfs_volume.repos.coordinator import Coordinator
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.locks import RepoLocks
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.working_copies import WorkingCopies
from pfs_volume.space import SpaceReserve

if TYPE_CHECKING:
    from pfs_volume.repos.recovery import RecoveryReport

log = logging.getLogger(__name__)


def new_commit_id() -> str:
    """A fresh commit id: 32 random lowercase hex digits."""
    return secrets.token_hex(16)


class Commits:
    """Makes this node's commits.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        layout: where working copies and snapshots live.
        locks: the branch locks.
        refs: branch records.
        working_copies: staleness, and setting a copy aside for a tree.
        catalog: makes the repo and branch a tree is committed to.
        coordinator: the write lock that fences the head's move, and replication.
        space: the pool's reserve (a commit never uses it; a mount's release may).
        commit_errors: the branches' last failed commits.
        clock: returns the current UTC time.
        new_id: returns a fresh commit id.
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        locks: RepoLocks,
        refs: Refs,
        working_copies: WorkingCopies,
        catalog: Catalog,
        coordinator: Coordinator,
        space: SpaceReserve,
        commit_errors: CommitErrors,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.locks = locks
        self.refs = refs
        self.working_copies = working_copies
        self.catalog = catalog
        self.coordinator = coordinator
        self.space = space
        self.commit_errors = commit_errors
        self.clock = clock
        self.new_id = new_id
        self._commit_listeners: list[Callable[[CommitRecord], None]] = []
        self._starting_listeners: list[Callable[[CommitRecord], None]] = []

    def commit_working_copy(
        self,
        repo: str,
        branch: str,
        message: str,
        origin: str,
        mount_id: str | None = None,
        provenance: tuple[str, ...] = (),
        job: str | None = None,
        merge_parents: tuple[str, ...] = (),
    ) -> CommitRecord | None:
        """Commit what changed in a branch's working copy; release ``mount_id`` with it.
        A pipeline's output commit records its ``provenance`` (input commits as
        ``REPO@ID``) and ``job``; a merge commit its ``merge_parents`` (the merged heads),
        and it is made even when no file changed (the graph must show the merge).

        Returns:
            The new commit, or None when nothing changed since the head and it is no
            merge (then the mount is released all the same).
        Raises:
            Conflict: the head moved under the commit (the snapshot is removed again).
            PoolFull: the pool is full (a commit never uses the pool's reserve).
            StorageError: the snapshot or the metadata failed. The mount is released all
                the same (with the pool's reserve if it must), as Docker never repeats an
                Unmount: the changes stay in the working copy, the failure is kept as the
                branch's ``commit_errors`` entry, and the branch's next commit takes them.
        """
        with self.locks.branch_lock(repo, branch):
            try:
                with self.space.reporting(f"the commit of {repo}/{branch}"):
                    made = self._commit(
                        repo, branch, message, origin, mount_id, provenance, job, merge_parents
                    )
            except Exception as exc:
                # An outage keeps the mount for a retry; a lost lease is a failed commit.
                outage = isinstance(exc, Unavailable) and not isinstance(exc, LeaseLost)
                if mount_id is not None and not outage:
                    log.error(
                        "repo=%s branch=%s mount=%s commit failed; mount released, the "
                        "changes stay in the working copy for the next commit: %s",
                        repo,
                        branch,
                        mount_id,
                        exc,
                    )
                    self._forget_mount(mount_id)
                    self.commit_errors.record(repo, branch, str(exc), mount_id)
                raise
            self.commit_errors.clear(repo, branch)
        if made is not None:
            self.coordinator.committed(made)
            for listener in self._commit_listeners:
                try:
                    listener(made)
                except Exception:
                    log.exception("repo=%s commit=%s: a commit listener failed", repo, made.id)
        return made

    def commit_tree(
        self,
        repo: str,
        branch: str,
        tree: Path,
        *,
        message: str,
        origin: str,
        provenance: tuple[str, ...] = (),
        job: str | None = None,
        check: Callable[[], None] = lambda: None,
    ) -> CommitRecord | None:
        """Commit a tree built aside as a branch's next commit, whole or not at all: under
        the branch's lock ``check`` runs (it refuses by raising), the working copy is set
        aside (a dirty one kept under ``detached/``, invariant 1), ``tree`` takes its
        place in one rename and is committed. The branch never holds half a tree.

        Args:
            tree: a writable subvolume in the pool; it is deleted whenever it is refused.
            check: called under the branch's lock right before the swap.
        Returns:
            As ``commit_working_copy``.
        Raises:
            whatever ``check`` raises; Conflict: the branch is mounted; as
            ``commit_working_copy``.
        """
        self.catalog.ensure_repo(repo)
        self.catalog.ensure_branch(repo, branch, None)
        with self.locks.branch_lock(repo, branch):
            try:
                check()
                mounted = [m for m in self.store.list_mounts(repo) if m.branch == branch]
                if mounted:
                    raise Conflict(
                        f"the branch {repo}/{branch} is mounted by {len(mounted)} "
                        "container(s); its working copy cannot be replaced by a new tree"
                    )
            except BaseException:
                self.pool.delete_subvolume(tree)
                raise
            work = self.layout.branch_path(repo, branch)
            self.working_copies.set_aside(repo, branch, f"replaced by the tree of: {message}")
            work.parent.mkdir(parents=True, exist_ok=True)
            self.pool.move(tree, work)
            return self.commit_working_copy(
                repo, branch, message=message, origin=origin, provenance=provenance, job=job
            )

    def on_commit_starting(self, listener: Callable[[CommitRecord], None]) -> None:
        """Call ``listener`` with each commit this node is about to make, before its
        record can be seen (quick, never raising; a failure is logged); ``on_commit``'s
        listeners follow once it is made."""
        self._starting_listeners.append(listener)

    def on_commit(self, listener: Callable[[CommitRecord], None]) -> None:
        """Call ``listener`` after each commit this node makes (it must be quick and
        must not raise; a failure is logged)."""
        self._commit_listeners.append(listener)

    def release_mount_record(self, mount_id: str) -> None:
        """Delete a mount record; on a full pool with the pool's reserve (releasing state
        must always work). Raises PoolFull (no reserve left), StorageError, Unavailable."""
        self.space.freeing(f"releasing mount {mount_id}", lambda: self.store.delete_mount(mount_id))

    def _forget_mount(self, mount_id: str) -> None:
        try:
            self.release_mount_record(mount_id)
        except PfsError as exc:
            log.error("mount=%s could not be released (retried at start-up): %s", mount_id, exc)

    def _commit(
        self,
        repo: str,
        branch: str,
        message: str,
        origin: str,
        mount_id: str | None,
        provenance: tuple[str, ...] = (),
        job: str | None = None,
        merge_parents: tuple[str, ...] = (),
    ) -> CommitRecord | None:
        record = self.refs.get_branch(repo, branch)
        path = self.layout.branch_path(repo, branch)
        if self.pool.is_subvolume(path) and self.working_copies.is_stale(record):
            raise Conflict(
                f"branch {repo}/{branch} moved to commit {record.head} on another node while "
                f"this node's working copy was based on {record.working_base}; the changes "
                "here were not committed (the next writable mount here keeps them aside)"
            )
        # A merge commit, and a pipeline's output commit (its provenance is what later
        # jobs check their inputs' consistency by), are made even when no file changed.
        if (
            not merge_parents
            and not provenance
            and (
                not self.pool.is_subvolume(path)
                or not self.pool.changed_since(path, record.clean_generation)
            )
        ):
            if mount_id is not None:
                self.release_mount_record(mount_id)
            log.info("repo=%s branch=%s mount=%s unchanged: no commit", repo, branch, mount_id)
            return None
        commit = CommitRecord(
            id=self.new_id(),
            repo=repo,
            branch=branch,
            parent=record.head,
            created=self.clock(),
            message=message,
            origin=origin,
            holders=(self.coordinator.node_id,),
            provenance=provenance,
            job=job,
            merge_parents=merge_parents,
        )
        intent = CommitIntent(commit=commit, mount_id=mount_id)
        self.store.begin_commit(intent)
        for listener in self._starting_listeners:
            try:
                listener(commit)
            except Exception:
                log.exception("repo=%s commit=%s: a commit listener failed", repo, commit.id)
        failpoint("commit.after_intent")
        snapshot = self.layout.commit_path(repo, commit.id)
        try:
            snapshot.parent.mkdir(parents=True, exist_ok=True)
            self.pool.snapshot(path, snapshot, readonly=True)
            failpoint("commit.after_snapshot")
            # The snapshot committed a transaction that includes the working copy's
            # new generation, so no further sync is needed to read it.
            generation = self.pool.info(path).generation
            fence = self.coordinator.acquire(repo, branch)
            failpoint("commit.before_finish")
            self.store.finish_commit(intent, generation, fence)
        except LeaseLost:
            # The write lock is gone: the commit failed, and is undone like any failure.
            self._undo(intent)
            raise
        except Unavailable:
            # The store may have applied the commit before the answer was lost: keep the
            # snapshot and the intent; start-up recovery sees which happened.
            log.error(
                "repo=%s branch=%s commit=%s outcome unknown (metadata store unreachable); "
                "snapshot and intent kept for recovery",
                repo,
                branch,
                commit.id,
            )
            raise
        except Exception:
            self._undo(intent)
            raise
        failpoint("commit.after_finish")
        log.info(
            "repo=%s branch=%s commit=%s parent=%s mount=%s committed",
            repo,
            branch,
            commit.id,
            commit.parent,
            mount_id,
        )
        return commit

    def _undo(self, intent: CommitIntent) -> None:
        snapshot = self.layout.commit_path(intent.commit.repo, intent.commit.id)
        if self.pool.is_subvolume(snapshot):
            self.pool.delete_subvolume(snapshot)
        self.store.abandon_commit(intent)

    def recover_intent(self, intent: CommitIntent, report: RecoveryReport) -> None:
        """Finish or undo (then redo, when its mount still waits) a commit a crash
        interrupted, at start-up; what happened goes into ``report``.

        Raises:
            PfsError: it could not be settled now (the intent stays for the next start).
        """
        commit = intent.commit
        snapshot = self.layout.commit_path(commit.repo, commit.id)
        branch = self.store.get_branch(commit.repo, commit.branch)
        whole = self.pool.is_subvolume(snapshot) and self.pool.info(snapshot).readonly
        if self.store.get_commit(commit.repo, commit.id) is not None:
            # The commit landed but its answer was lost: only the intent is left over.
            self.store.abandon_commit(intent)
            report.finished.append(commit.id)
            return
        if branch is not None and whole and branch.head == commit.parent:
            # Nothing else runs during start-up, so the head cannot move under us here.
            generation = self.pool.generation(self.layout.branch_path(commit.repo, commit.branch))
            others = [
                m
                for m in self.store.list_mounts(commit.repo)
                if m.branch == commit.branch and m.id != intent.mount_id
            ]
            if others:
                # Containers may have written since the snapshot (even while the daemon
                # was down): the working copy must not look clean, or the last unmount
                # would skip their changes. 0 is older than any generation.
                generation = 0
            with self.locks.branch_lock(commit.repo, commit.branch):
                fence = self.coordinator.acquire(commit.repo, commit.branch)
                self.store.finish_commit(intent, generation, fence)
            log.info(
                "repo=%s branch=%s commit=%s finished after a crash",
                commit.repo,
                commit.branch,
                commit.id,
            )
            report.finished.append(commit.id)
            return
        self._undo(intent)
        report.abandoned.append(commit.id)
        log.info(
            "repo=%s branch=%s commit=%s abandoned after a crash",
            commit.repo,
            commit.branch,
            commit.id,
        )
        if branch is not None and intent.mount_id and self.store.get_mount(intent.mount_id):
            redone = self.commit_working_copy(
                commit.repo, commit.branch, commit.message, commit.origin, intent.mount_id
            )
            if redone is not None:
                report.redone.append(redone.id)
