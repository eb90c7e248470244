"""The commit graph's front: the one object the layers above call (volumes, files,
history, transfer, the API). It holds no logic of its own: each method hands over to
the part whose job it is (``pfs_volume.repos.parts``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pfs_volume.branch_uses import BranchUse, UsesLookup, no_uses
from pfs_volume.btrfs import BtrfsPool
from pfs_volume.commit_errors import CommitError
from pfs_volume.errors import PoolFull
from pfs_volume.meta import (
    BranchRecord,
    CommitRecord,
    MetadataStore,
    MountRecord,
    RepoRecord,
    utcnow,
)
from pfs_volume.meta.change_log import Part
from pfs_volume.names import Ref
from pfs_volume.repos.catalog import RepoSummary, Reset
from pfs_volume.repos.commits import new_commit_id
from pfs_volume.repos.coordinator import Coordinator, Placement
from pfs_volume.repos.gc import GcReport
from pfs_volume.repos.parts import RepoParts
from pfs_volume.repos.recovery import RecoveryReport
from pfs_volume.repos.refs import CommitDetails, Diff
from pfs_volume.space import Reserve

T = TypeVar("T")


class RepoService:
    """Repos, branches and commits of one node's pool. Locks are always taken branch
    first, then repo (``pfs_volume.repos.locks``).

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        clock: returns the current UTC time (injected so tests can fix it).
        new_id: returns a fresh commit id.
        coordinator: placement, write locks and replication (default: a single host).
        uses: which pipelines read or write a repo's branches (default: none): a
            pipeline's output is written by its jobs only, and what it names is kept.
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_commit_id,
        coordinator: Coordinator | None = None,
        uses: UsesLookup = no_uses,
    ) -> None:
        self._compose(RepoParts.build(store, pool, clock, new_id, coordinator, uses))

    @classmethod
    def over(cls, parts: RepoParts) -> RepoService:
        """The front of parts built already (the daemon builds them first, to hand some
        to the cluster)."""
        service = cls.__new__(cls)
        service._compose(parts)
        return service

    def _compose(self, parts: RepoParts) -> None:
        self._parts = parts
        self._layout = parts.layout
        self._locks = parts.locks
        self._snapshots = parts.snapshots
        self._refs = parts.refs
        self._working_copies = parts.working_copies
        self._collector = parts.collector
        self._catalog = parts.catalog
        self._commits = parts.commits
        self._recovery = parts.recovery
        # For tests, which look at the parts; code outside repos/ never does
        # (tests/unit/test_architecture.py).
        self.store, self.pool, self.clock = parts.store, parts.pool, parts.clock
        self.coordinator, self.space = parts.coordinator, parts.space
        self.repos_dir, self.incoming_dir = parts.layout.repos_dir, parts.layout.incoming_dir

    def repo_dir(self, repo: str) -> Path:
        """The folder that holds a repo's working copies and snapshots. See
        ``PoolLayout.repo_dir``."""
        return self._layout.repo_dir(repo)

    def branch_path(self, repo: str, branch: str) -> Path:
        """Where a branch's working copy lives (it may not exist yet). See
        ``PoolLayout.branch_path``."""
        return self._layout.branch_path(repo, branch)

    def parts_at(self, paths: Iterable[Path]) -> tuple[frozenset[str], frozenset[Part]] | None:
        """What the paths are to List. See ``PoolLayout.parts_at``."""
        return self._layout.parts_at(paths)

    def commit_path(self, repo: str, commit_id: str) -> Path:
        """Where a commit's read-only snapshot lives. See ``PoolLayout.commit_path``."""
        return self._layout.commit_path(repo, commit_id)

    def branch_lock(self, repo: str, branch: str) -> AbstractContextManager[None]:
        """Serialise everything that mounts, commits or changes one branch's working copy,
        on this node and (through the coordinator's write lock) in the whole cluster. See
        ``RepoLocks.branch_lock``."""
        return self._locks.branch_lock(repo, branch)

    def release_idle_locks(self, held: list[tuple[str, str]]) -> None:
        """Give back the write locks among ``held`` that nothing here uses any more (a
        release that failed while etcd was away). See ``RepoLocks.release_idle_locks``."""
        self._locks.release_idle_locks(held)

    def repo_lock(self, repo: str) -> AbstractContextManager[None]:
        """Serialise creating and deleting a repo, its branches, working copies and mounts.
        See ``RepoLocks.repo_lock``."""
        return self._locks.repo_lock(repo)

    def snapshot_on_disk(self, repo: str, commit_id: str) -> bool:
        """True when a read-only subvolume sits at the commit's place in the pool (a receive
        a crash interrupted leaves a writable one). See ``Snapshots.snapshot_on_disk``."""
        return self._snapshots.snapshot_on_disk(repo, commit_id)

    def snapshot_exists(self, repo: str, commit_id: str) -> bool:
        """True when this node holds the commit's whole snapshot: its record lists this node
        among the holders AND the subvolume is read-only. See ``Snapshots.snapshot_exists``."""
        return self._snapshots.snapshot_exists(repo, commit_id)

    def holds(self, commit: CommitRecord) -> bool:
        """True when the commit's record lists this node among its holders (half of
        ``snapshot_exists``, for a caller that read the record). See ``Snapshots.holds``."""
        return self._snapshots.holds(commit)

    def local_commit(self, repo: str, commit_id: str) -> Path:
        """The commit's snapshot in this node's pool (see ``snapshot_exists``), fetched from
        a holder if this node holds no whole copy. See ``Snapshots.local_commit``."""
        return self._snapshots.local_commit(repo, commit_id)

    def is_working_copy(self, repo: str, branch: str) -> bool:
        """True when the branch's working copy has been made. See ``WorkingCopies.exists``."""
        return self._working_copies.exists(repo, branch)

    def create_repo(
        self, name: str, description: str = "", replicas: int | None = None
    ) -> RepoRecord:
        """Create an empty repo with an empty ``master`` branch, placed on ``replicas``
        nodes (default: the cluster's default). See ``Catalog.create_repo``."""
        return self._catalog.create_repo(name, description, replicas)

    def ensure_repo(self, name: str) -> RepoRecord:
        """The repo called ``name``, created empty if it does not exist. See
        ``Catalog.ensure_repo``."""
        return self._catalog.ensure_repo(name)

    def get_repo(self, name: str) -> RepoRecord:
        """The repo called ``name``. See ``Refs.get_repo``."""
        return self._refs.get_repo(name)

    def twins(self, repo: str, commit_id: str) -> list[Path]:
        """Where other repos of this pool keep a commit with the same id: an import keeps
        commit ids, so the same export imported twice holds each commit twice, and ``btrfs
        receive`` may build on either copy (see ``streams.receive``). See
        ``Snapshots.twins``."""
        return self._snapshots.twins(repo, commit_id)

    def summary(self, name: str) -> RepoSummary:
        """A repo with its branches, commit count, mounts, the branches with uncommitted
        changes and their last commit errors. See ``Catalog.summary``."""
        return self._catalog.summary(name)

    def has_uncommitted_changes(self, repo: str, branch: str) -> bool:
        """True when the branch's working copy here holds changes no commit holds. See
        ``WorkingCopies.has_uncommitted_changes``."""
        return self._working_copies.has_uncommitted_changes(repo, branch)

    def commit_details(self, repo: str, ref: Ref) -> CommitDetails:
        """A commit with the bytes its files hold and how many paths it changed (None for a
        pruned commit, and for one whose data, or whose parent's, is not on this node:
        inspecting never fetches). See ``Refs.commit_details``."""
        return self._refs.commit_details(repo, ref)

    def delete_repo(self, name: str) -> None:
        """Delete a repo with all its branches, commits and data. See
        ``Catalog.delete_repo``."""
        self._catalog.delete_repo(name)

    def purge_deleted_repos(self) -> list[str]:
        """Remove this pool's data of repos deleted through another node (the store says so;
        a missing record alone is no evidence) that nothing here mounts; their names. See
        ``Collector.purge_deleted_repos``."""
        return self._collector.purge_deleted_repos()

    def drop_pruned_copies(self, repo: str) -> list[str]:
        """Delete this pool's snapshots of commits gc pruned (on any node) that nothing here
        mounts; their ids. See ``Collector.drop_pruned_copies``."""
        return self._collector.drop_pruned_copies(repo)

    def get_branch(self, repo: str, name: str) -> BranchRecord:
        """The branch. See ``Refs.get_branch``."""
        return self._refs.get_branch(repo, name)

    def list_branches(self, repo: str) -> list[BranchRecord]:
        """The repo's branches. See ``Refs.list_branches``."""
        return self._refs.list_branches(repo)

    def ensure_branch(self, repo: str, name: str, start: str | None) -> BranchRecord:
        """The branch, created with head ``start`` (a commit id, or None) if absent. See
        ``Catalog.ensure_branch``."""
        return self._catalog.ensure_branch(repo, name, start)

    def working_copy(self, repo: str, branch: str) -> Path:
        """The branch's working copy, made from its head (or empty) if it does not exist.
        See ``WorkingCopies.working_copy``."""
        return self._working_copies.working_copy(repo, branch)

    def create_branch(self, repo: str, name: str, start: Ref | None = None) -> BranchRecord:
        """Create branch ``name`` at the commit ``start`` names (default: master's head).
        See ``Catalog.create_branch``."""
        return self._catalog.create_branch(repo, name, start)

    def delete_branch(self, repo: str, name: str) -> None:
        """Delete a branch and its working copy; its commits stay, reachable by id. See
        ``Catalog.delete_branch``."""
        self._catalog.delete_branch(repo, name)

    def reset_branch(self, repo: str, name: str, ref: Ref) -> Reset:
        """Move a branch's head to the commit ``ref`` names; the old head stays reachable by
        id. See ``Catalog.reset_branch``."""
        return self._catalog.reset_branch(repo, name, ref)

    def drop_working_copy(self, repo: str, branch: str) -> None:
        """Delete a branch's CLEAN working copy after a change to it failed half way; the
        next use makes it again from the head. See ``WorkingCopies.drop``."""
        self._working_copies.drop(repo, branch)

    def refuse_if_busy(self, repo: str, branch: str, verb: str) -> None:
        """Refuse to change a branch that a pipeline owns, that is mounted or that holds
        uncommitted changes. See ``Catalog.refuse_if_busy``."""
        self._catalog.refuse_if_busy(repo, branch, verb)

    def refuse_if_owned(self, repo: str, branch: str, verb: str) -> None:
        """Refuse a write from outside a pipeline to its output branch. See
        ``Catalog.refuse_if_owned``."""
        self._catalog.refuse_if_owned(repo, branch, verb)

    def users(self, repo: str, branch: str | None = None) -> list[BranchUse]:
        """The pipelines' uses of a repo (or of one of its branches). See ``Catalog.users``."""
        return self._catalog.users(repo, branch)

    def gc(
        self,
        repo: str,
        keep_last: int | None = None,
        older_than: timedelta | None = None,
    ) -> GcReport:
        """Delete the snapshots of old commits; their records stay, marked pruned. See
        ``Collector.gc``."""
        return self._collector.gc(repo, keep_last, older_than)

    def pinned(self, repo: str, commit_ids: Iterable[str]) -> AbstractContextManager[None]:
        """Keep these commits' snapshots on disk while the block runs (an export sends them
        one after another, each the base of the next). See ``Collector.pinned``."""
        return self._collector.pinned(repo, commit_ids)

    def pending_deletions(self) -> set[tuple[str, str]]:
        """(repo, commit id) of pruned snapshots still waiting to be deleted. See
        ``Collector.pending_deletions``."""
        return self._collector.pending_deletions()

    def drain_pending(self) -> list[str]:
        """Delete the pruned snapshots that could not be deleted earlier (call it when a
        ``btrfs send`` ends); the ids it deleted. See ``Collector.drain_pending``."""
        return self._collector.drain_pending()

    def pending_repo_deletions(self) -> set[str]:
        """Deleted repos whose data is still on this pool, waiting for a read to end. See
        ``Collector.pending_repo_deletions``."""
        return self._collector.pending_repo_deletions()

    def diff(self, repo: str, to: Ref, base: Ref | None = None) -> Diff:
        """What changed from ``base`` (default: the parent of ``to``) to ``to``, in time
        proportional to the change. See ``Refs.diff``."""
        return self._refs.diff(repo, to, base)

    def require_data(self, commit: CommitRecord) -> CommitRecord:
        """The commit, if its data is still there. See ``Refs.require_data``."""
        return self._refs.require_data(commit)

    def get_commit(self, repo: str, commit_id: str) -> CommitRecord:
        """The commit with this exact id. See ``Refs.get_commit``."""
        return self._refs.get_commit(repo, commit_id)

    def resolve_commit(self, repo: str, ref: Ref) -> CommitRecord:
        """The commit a ref names: a branch's head or a commit (prefix), then its walk back
        (``~N`` along first parents, ``^N`` to the N-th parent). See
        ``Refs.resolve_commit``."""
        return self._refs.resolve_commit(repo, ref)

    def log(
        self, repo: str, ref: Ref, limit: int | None = None, first_parent: bool = False
    ) -> list[CommitRecord]:
        """The commit ``ref`` names and its ancestors, newest first: through every parent of
        a merge (what the merged branch brought is history too), or with ``first_parent``
        only the branch's own line. See ``Refs.log``."""
        return self._refs.log(repo, ref, limit, first_parent)

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
        """Commit what changed in a branch's working copy; release ``mount_id`` with it. See
        ``Commits.commit_working_copy``."""
        return self._commits.commit_working_copy(
            repo, branch, message, origin, mount_id, provenance, job, merge_parents
        )

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
        aside (a dirty one kept under ``detached/``, invariant 1), ``tree`` takes its place
        in one rename and is committed. See ``Commits.commit_tree``."""
        return self._commits.commit_tree(
            repo,
            branch,
            tree,
            message=message,
            origin=origin,
            provenance=provenance,
            job=job,
            check=check,
        )

    def on_commit(self, listener: Callable[[CommitRecord], None]) -> None:
        """Call ``listener`` after each commit this node makes (it must be quick and must
        not raise; a failure is logged). See ``Commits.on_commit``."""
        self._commits.on_commit(listener)

    def release_mount_record(self, mount_id: str) -> None:
        """Delete a mount record; on a full pool with the pool's reserve (releasing state
        must always work). See ``Commits.release_mount_record``."""
        self._commits.release_mount_record(mount_id)

    def recover(self) -> RecoveryReport:
        """Reconcile disk and metadata after a crash; run once before serving. See
        ``Recovery.recover``."""
        return self._recovery.recover()

    @property
    def node_id(self) -> str:
        """This node's id (the holder its commits are recorded with)."""
        return self._parts.coordinator.node_id

    def now(self) -> datetime:
        """The current UTC time, by the clock the commit graph uses."""
        return self._parts.clock()

    def pool_folder(self, name: str) -> Path:
        """A top folder of the pool that another component keeps its own files in (it
        may not exist yet). See ``PoolLayout.folder``."""
        return self._layout.folder(name)

    def mark_clean(self, repo: str, branch: str, head: str | None) -> None:
        """Record the branch's working copy, as it is now, as holding just ``head``. See
        ``WorkingCopies.mark_clean``."""
        self._working_copies.mark_clean(repo, branch, head)

    def pool_space(self) -> tuple[int, int]:
        """The pool's free and total bytes. Raises StorageError."""
        return self._parts.pool.space()

    def reporting_full_pool(self, what: str) -> AbstractContextManager[None]:
        """Turn running out of space inside into PoolFull naming ``what``. See
        ``SpaceReserve.reporting``."""
        return self._parts.space.reporting(what)

    def freeing_space(self, what: str, action: Callable[[], T]) -> T:
        """Run a verb that frees space or releases state, with the pool's reserve if it
        meets a full pool. See ``SpaceReserve.freeing``."""
        return self._parts.space.freeing(what, action)

    def pool_full_error(self, what: str, cause: BaseException | None = None) -> PoolFull:
        """The PoolFull that says how full the pool is and which verbs free space."""
        return self._parts.space.full_error(what, cause)

    def reserve(self) -> Reserve:
        """The pool's reserve: whether pfs keeps one, whether it is there, its size."""
        return self._parts.space.state()

    def commit_errors_of(self, repo: str) -> dict[str, CommitError]:
        """The last failed commit of each of the repo's branches that has one, by name."""
        return self._parts.commit_errors.of_repo(repo)

    def place(self, repo: str, replicas: int | None) -> Placement:
        """Where a new repo (or an imported one) is kept. Raises InvalidRequest."""
        return self._parts.coordinator.place(repo, replicas)

    def repo_exists(self, name: str) -> bool:
        """True when the repo exists."""
        return self._parts.store.get_repo(name) is not None

    def list_repos(self) -> list[RepoRecord]:
        """Every repo, by name."""
        return self._parts.store.list_repos()

    def find_branch(self, repo: str, name: str) -> BranchRecord | None:
        """The branch, or None."""
        return self._parts.store.get_branch(repo, name)

    def list_commits(self, repo: str) -> list[CommitRecord]:
        """The repo's commits as the store lists them (none for an unknown repo)."""
        return self._parts.store.list_commits(repo)

    def list_mounts(self, repo: str) -> list[MountRecord]:
        """The repo's mount records on this node."""
        return self._parts.store.list_mounts(repo)

    def install_records(
        self, repo: RepoRecord, branches: list[BranchRecord], commits: list[CommitRecord]
    ) -> None:
        """Write an imported repo's records in one transaction (its snapshots are in
        place already), then measure them in the background. Raises Conflict,
        StorageError, Unavailable."""
        self._parts.store.import_repo(repo, branches, commits)
        self._parts.sizes.measure_imported(repo.name, commits)

    def delete_tree(self, path: Path) -> None:
        """Delete a folder of the pool with the subvolumes in it. Raises StorageError."""
        self._parts.pool.delete_tree(path)
