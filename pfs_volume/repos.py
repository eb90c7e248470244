"""The commit graph: repos, branches, commits, refs, and their place in the pool.

    <pool>/repos/<repo>/branches/<branch>   writable working copy (a subvolume)
    <pool>/repos/<repo>/commits/<id>        read-only snapshot, one per commit
    <pool>/incoming/                        partial receives; emptied at start
    <pool>/staging/, puts/                  puts' uploads and markers (upload, putlog)

A commit is made in three steps, so that a crash at any point leaves either no commit or
a whole one (DESIGN.md, invariant 2): record an intent, snapshot the working copy
read-only, then in one metadata transaction write the commit record, move the head by
compare-and-swap and release the mount that asked for it. ``recover`` finishes or undoes
whatever a crash interrupted; it never deletes a working copy.
"""

from __future__ import annotations

import heapq
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from pfs_volume.branch_uses import (
    BranchUse,
    UsesLookup,
    in_use_refusal,
    no_uses,
    owned_refusal,
    owner_of,
)
from pfs_volume.btrfs import BtrfsPool
from pfs_volume.btrfs.changes import changes
from pfs_volume.commit_errors import CommitError, CommitErrors
from pfs_volume.diff import Change
from pfs_volume.errors import (
    Busy,
    Conflict,
    InUse,
    InvalidName,
    InvalidRequest,
    LeaseLost,
    NotFound,
    PfsError,
    Unavailable,
)
from pfs_volume.failpoints import failpoint
from pfs_volume.meta import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    Fence,
    MetadataStore,
    MountRecord,
    RepoRecord,
    utcnow,
)
from pfs_volume.names import DEFAULT_BRANCH, Ref, check_component, is_commit_prefix
from pfs_volume.space import SpaceReserve, is_no_space

log = logging.getLogger(__name__)


def new_commit_id() -> str:
    """A fresh commit id: 32 random lowercase hex digits."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class RepoSummary:
    """A repo with its branches and how many commits it has."""

    repo: RepoRecord
    branches: list[BranchRecord]
    commit_count: int
    mounts: list[MountRecord]
    size: int
    """Bytes the repo uses on disk, data shared between its commits counted once."""
    uncommitted: frozenset[str] = frozenset()
    """Branches whose working copy here holds changes no commit holds."""
    commit_errors: dict[str, CommitError] = field(default_factory=dict)
    """The last failed commit of branches that have not committed since, by branch."""


@dataclass(frozen=True)
class GcReport:
    """What gc pruned and about how much space that gave back."""

    pruned: list[str]
    bytes_freed: int


@dataclass
class RecoveryReport:
    """What start-up reconciliation did."""

    finished: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    purged_repos: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unknown_snapshots: list[Path] = field(default_factory=list)


IMPORT_MARKER = ".pfs-import"
"""In a repo folder that an import moved into place before its records were written."""
MAX_DESCRIPTION = 4096
MAX_KEEP_LAST = 1_000_000_000
LOCK_TIMEOUT = 50.0
"""Seconds an operation waits for a repo or branch lock: below the 60 s Docker gives
every plugin call but Mount, so a busy repo answers "busy" instead of timing out."""


class Coordinator(Protocol):
    """What the commit graph needs from the cluster: placement, branch write locks,
    moving snapshots between nodes. ``SingleHost`` is the one-node answer; the cluster
    package implements it over etcd and the node API."""

    node_id: str

    def place(self, repo: str, replicas: int | None) -> tuple[int, tuple[str, ...]]:
        """The replica count and replica set of a new repo. Raises InvalidRequest."""

    def acquire(self, repo: str, branch: str) -> Fence | None:
        """Take (or return the held) cluster-wide write lock of a branch. Raises Conflict
        naming the node that holds it, Unavailable."""

    def release(self, repo: str, branch: str) -> None:
        """Give a branch's write lock back."""

    def fetch(self, repo: str, commit_id: str) -> None:
        """Bring a commit's snapshot into this node's pool. Raises NotFound, Unavailable."""

    def committed(self, commit: CommitRecord) -> None:
        """A commit was made on this node (replicate it, in the background)."""


class SingleHost:
    """The coordinator of a node on its own: one copy, no locks beyond the process's."""

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id

    def place(self, repo: str, replicas: int | None) -> tuple[int, tuple[str, ...]]:
        """One copy, on this host. Raises InvalidRequest for more."""
        if replicas is not None and (isinstance(replicas, bool) or replicas != 1):
            raise InvalidRequest(
                f"repo {repo!r}: {replicas} replicas need a cluster (pfs serve --etcd ...); "
                "a single host keeps 1 copy"
            )
        return 1, ()

    def acquire(self, repo: str, branch: str) -> Fence | None:
        """No cluster lock: the branch's process-local lock is the only writer."""
        return None

    def release(self, repo: str, branch: str) -> None:
        """Nothing to give back."""

    def fetch(self, repo: str, commit_id: str) -> None:
        """There is nowhere to fetch from. Raises NotFound."""
        raise NotFound(
            f"commit {commit_id} of repo {repo} has no copy in this node's pool that its "
            "record lists as held here, and a single host has nowhere to fetch one from"
        )

    def committed(self, commit: CommitRecord) -> None:
        """Nothing to replicate."""


class KeyedLocks:
    """One re-entrant lock per key, made on first use."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, ...], threading.RLock] = {}

    @contextmanager
    def hold(self, *key: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the lock of ``key`` for the ``with`` block.

        Raises:
            Busy: when it cannot be had within ``timeout`` seconds.
        """
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        if not lock.acquire(timeout=timeout):
            raise Busy(f"{'/'.join(key)} is busy with another operation; try again")
        try:
            yield
        finally:
            lock.release()


class RepoService:
    """Repos, branches and commits of one node's pool.

    Two kinds of lock, always taken in this order: a branch's lock (held while its working
    copy is mounted, committed or made) and then its repo's lock (held while the repo,
    its branches and working copies are created or deleted, and while a mount is
    recorded). Commits take only the branch lock, so a commit never waits for another
    repo or branch.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        clock: returns the current UTC time (injected so tests can fix it).
        new_id: returns a fresh commit id.
        coordinator: placement, write locks and replication (default: a single host).
        uses: which pipelines read or write a repo's branches (default: none); a
            pipeline's output branch is written by its jobs only, and a repo or branch
            a pipeline names is not deleted under it.
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
        self.store = store
        self.uses = uses
        self.pool = pool
        self.clock = clock
        self.new_id = new_id
        self.coordinator: Coordinator = coordinator or SingleHost()
        self._repo_locks = KeyedLocks()
        self._branch_locks = KeyedLocks()
        self._write_depth: dict[tuple[str, str], int] = {}
        self.space = SpaceReserve(pool)
        self.commit_errors = CommitErrors(store, clock)
        self._pending_deletions: set[tuple[str, str]] = set()
        self._pending_repos: set[str] = set()
        """Deleted repos whose data btrfs would not delete yet (a send read it)."""
        self._pins: dict[tuple[str, str], int] = {}
        self._pending_lock = threading.Lock()
        self._commit_listeners: list[Callable[[CommitRecord], None]] = []
        self.repos_dir = pool.root / "repos"
        self.incoming_dir = pool.root / "incoming"
        self.repos_dir.mkdir(exist_ok=True)
        self.incoming_dir.mkdir(exist_ok=True)

    # paths

    def repo_dir(self, repo: str) -> Path:
        """The folder that holds a repo's working copies and snapshots."""
        return self.repos_dir / repo

    def branch_path(self, repo: str, branch: str) -> Path:
        """Where a branch's working copy lives (it may not exist yet)."""
        return self.repos_dir / repo / "branches" / branch

    def commit_path(self, repo: str, commit_id: str) -> Path:
        """Where a commit's read-only snapshot lives."""
        return self.repos_dir / repo / "commits" / commit_id

    @contextmanager
    def branch_lock(self, repo: str, branch: str) -> Iterator[None]:
        """Serialise everything that mounts, commits or changes one branch's working copy,
        on this node and (through the coordinator's write lock) in the whole cluster.

        The cluster lock is taken on entry and given back on the outermost exit unless a
        container still has the branch mounted here (then the last unmount gives it back).

        Raises:
            Busy: another operation here holds the branch too long.
            Conflict: another node holds the branch's write lock. Unavailable: etcd.
        """
        key = (repo, branch)
        with self._branch_locks.hold(repo, branch):
            depth = self._write_depth.get(key, 0)
            if depth == 0:
                self.coordinator.acquire(repo, branch)
            self._write_depth[key] = depth + 1
            etcd_down = False
            try:
                yield
            except Unavailable as exc:
                # A lost lease is no outage: the lock is released as after any failure.
                etcd_down = not isinstance(exc, LeaseLost)
                raise
            finally:
                if depth == 0:
                    del self._write_depth[key]
                    if not etcd_down:  # else the repair loop releases it later
                        self._release_if_idle(repo, branch)
                else:
                    self._write_depth[key] = depth

    def _release_if_idle(self, repo: str, branch: str) -> None:
        try:
            if not any(m.branch == branch for m in self.store.list_mounts(repo)):
                self.coordinator.release(repo, branch)
        except PfsError as exc:
            log.warning("repo=%s branch=%s write lock not released yet: %s", repo, branch, exc)

    def release_idle_locks(self, held: list[tuple[str, str]]) -> None:
        """Give back the write locks among ``held`` that nothing here uses any more (a
        release that failed while etcd was away)."""
        for repo, branch in held:
            try:
                with self._branch_locks.hold(repo, branch, timeout=0.1):
                    if (repo, branch) not in self._write_depth:
                        self._release_if_idle(repo, branch)
            except Busy:
                continue  # in use right now, so not idle

    @contextmanager
    def repo_lock(self, repo: str) -> Iterator[None]:
        """Serialise creating and deleting a repo, its branches, working copies and mounts."""
        with self._repo_locks.hold(repo):
            yield

    def repo_exists(self, name: str) -> bool:
        """True when the repo exists."""
        return self.store.get_repo(name) is not None

    def snapshot_on_disk(self, repo: str, commit_id: str) -> bool:
        """True when a read-only subvolume sits at the commit's place in the pool (a
        receive a crash interrupted leaves a writable one). Not proof of a whole copy:
        only ``snapshot_exists`` is."""
        path = self.commit_path(repo, commit_id)
        return self.pool.is_subvolume(path) and self.pool.info(path).readonly

    def holds(self, commit: CommitRecord) -> bool:
        """True when the commit's record lists this node among its holders. On a single
        host every holder is this node (whatever its id was when the commit was made)."""
        if isinstance(self.coordinator, SingleHost):
            return bool(commit.holders)
        return self.coordinator.node_id in commit.holders

    def snapshot_exists(self, repo: str, commit_id: str) -> bool:
        """True when this node holds the commit's whole snapshot: its record lists this
        node among the holders AND the subvolume is read-only. A read-only subvolume
        alone proves nothing: ``btrfs receive`` finishes one at any clean end of its
        input, so a receive cut short, or a copy never accepted, looks just like it. Only
        such a copy is ever mounted, read, sent to a peer or exported."""
        record = self.store.get_commit(repo, commit_id)
        return record is not None and self.holds(record) and self.snapshot_on_disk(repo, commit_id)

    def local_commit(self, repo: str, commit_id: str) -> Path:
        """The commit's snapshot in this node's pool (see ``snapshot_exists``), fetched
        from a holder if this node holds no whole copy.

        Raises:
            NotFound: no node holds it. Unavailable: no holder can be reached.
        """
        if not self.snapshot_exists(repo, commit_id):
            self.coordinator.fetch(repo, commit_id)
        return self.commit_path(repo, commit_id)

    def is_working_copy(self, repo: str, branch: str) -> bool:
        """True when the branch's working copy has been made."""
        return self.pool.is_subvolume(self.branch_path(repo, branch))

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
        with self.repo_lock(name):
            if name in self.store.list_deleted_repos():
                self._finish_delete(name)
            count, placement = self.coordinator.place(name, replicas)
            record = RepoRecord(
                name=name,
                created=self.clock(),
                description=description,
                replicas=count,
                placement=placement,
            )
            master = BranchRecord(repo=name, name=DEFAULT_BRANCH, head=None, created=record.created)
            self.store.create_repo(record, master)
            for sub in ("branches", "commits"):
                (self.repo_dir(name) / sub).mkdir(parents=True, exist_ok=True)
            log.info("repo=%s created", name)
            return record

    def ensure_repo(self, name: str) -> RepoRecord:
        """The repo called ``name``, created empty if it does not exist."""
        with self.repo_lock(name):
            return self.store.get_repo(name) or self.create_repo(name)

    def get_repo(self, name: str) -> RepoRecord:
        """The repo called ``name``. Raises NotFound."""
        record = self.store.get_repo(name)
        if record is None:
            raise NotFound(f"there is no repo {name!r}")
        return record

    def list_repos(self) -> list[RepoRecord]:
        """Every repo, by name."""
        return self.store.list_repos()

    def twins(self, repo: str, commit_id: str) -> list[Path]:
        """Where other repos of this pool keep a commit with the same id: an import keeps
        commit ids, so the same export imported twice holds each commit twice, and
        ``btrfs receive`` may build on either copy (see ``streams.receive``)."""
        return [
            self.commit_path(other.name, commit_id)
            for other in self.store.list_repos()
            if other.name != repo
        ]

    def summary(self, name: str) -> RepoSummary:
        """A repo with its branches, commit count, mounts, the branches with uncommitted
        changes and their last commit errors. Raises NotFound."""
        repo = self.get_repo(name)
        branches = self.store.list_branches(name)
        return RepoSummary(
            repo=repo,
            branches=branches,
            commit_count=self.store.count_commits(name),
            mounts=self.store.list_mounts(name),
            size=self.pool.disk_usage(self.repo_dir(name)),
            uncommitted=frozenset(b.name for b in branches if self._is_dirty(b)),
            commit_errors=self.commit_errors.of_repo(name),
        )

    def has_uncommitted_changes(self, repo: str, branch: str) -> bool:
        """True when the branch's working copy here holds changes no commit holds."""
        record = self.store.get_branch(repo, branch)
        return record is not None and self._is_dirty(record)

    def commit_details(self, repo: str, ref: Ref) -> tuple[CommitRecord, int | None, int | None]:
        """A commit with the bytes its files hold and how many paths it changed (None for
        a pruned commit, and for one whose data, or whose parent's, is not on this node:
        inspecting never fetches)."""
        commit = self.resolve_commit(repo, ref)
        local = [commit.id] + ([commit.parent] if commit.parent else [])
        if commit.pruned or not all(self.snapshot_exists(repo, c) for c in local):
            return commit, None, None
        size = _apparent_size(self.commit_path(repo, commit.id))
        return commit, size, len(self.diff(repo, Ref(commit.id))[2])

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
            with self.repo_lock(name):
                if not records_gone:  # else a retry: only the data is left to delete
                    self._delete_repo(name)
                    records_gone = True
                try:
                    self._finish_delete(name)
                except PfsError as exc:
                    if is_no_space(exc):
                        raise
                    # btrfs refuses to delete a snapshot a peer's send reads: the repo
                    # is gone, and its data goes when the send ends (``drain_pending``).
                    with self._pending_lock:
                        self._pending_repos.add(name)
                    log.warning(
                        "repo=%s deleted; its data is deleted once nothing reads it: %s",
                        name,
                        exc,
                    )
            for branch in self.commit_errors.of_repo(name):
                self.commit_errors.clear(name, branch)
            log.info("repo=%s deleted", name)

        self.space.freeing(f"deleting repo {name}", attempt, after_deletes=True)
        self._drain_pending()

    def _delete_repo(self, name: str) -> None:
        """Check that the repo may be deleted and delete its records (a tombstone says
        its data is still to go)."""
        with self.repo_lock(name):
            self.get_repo(name)
            users = self.uses(name)
            if users:
                raise in_use_refusal(f"repo {name!r}", users)
            with self._pending_lock:
                reads = sum(n for (repo, _commit), n in self._pins.items() if repo == name)
            if reads:
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
            dirty = [b.name for b in self.store.list_branches(name) if self._is_dirty(b)]
            if dirty:
                raise Conflict(
                    f"repo {name!r} has changes no commit holds, in the working copy of "
                    f"branch(es) {', '.join(dirty)}; mount and unmount them to commit first"
                )
            self.store.delete_repo(name)

    def _finish_delete(self, name: str) -> None:
        """Delete the data of a repo whose records are gone, then its tombstone."""
        top = self.repo_dir(name)
        if top.exists():
            self.pool.delete_tree(top)
        self.store.forget_deleted_repo(name)

    def purge_deleted_repos(self) -> list[str]:
        """Remove this pool's data of repos deleted through another node (the store says
        so; a missing record alone is no evidence) that nothing here mounts; their names.

        Commit copies are deleted. A repo with working copies here is moved whole to
        ``<pool>/retired/`` instead: a working copy may hold changes no commit holds
        (invariant 1), so only a person deletes it.
        """
        removed = []
        for folder in sorted(self.repos_dir.iterdir()):
            if (folder / IMPORT_MARKER).exists():
                continue  # an import in progress; start-up settles interrupted ones
            with self.repo_lock(folder.name):
                if not self.store.repo_deleted(folder.name) or self.store.list_mounts(folder.name):
                    continue
                working = [p for sub in ("branches", "detached") for p in _children(folder / sub)]
                if working:
                    keep = (
                        self.pool.root / "retired" / f"{folder.name}.{self.clock():%Y%m%dT%H%M%S}"
                    )
                    keep.parent.mkdir(exist_ok=True)
                    if (folder / "commits").exists():
                        self.pool.delete_tree(folder / "commits")
                    folder.rename(keep)
                    log.warning(
                        "repo=%s deleted elsewhere: its working copies here were moved to %s",
                        folder.name,
                        keep,
                    )
                else:
                    self.pool.delete_tree(folder)
                    log.info("repo=%s deleted elsewhere: its data here is gone too", folder.name)
                removed.append(folder.name)
        return removed

    def drop_pruned_copies(self, repo: str) -> list[str]:
        """Delete this pool's snapshots of commits gc pruned (on any node) that nothing here
        mounts; their ids."""
        mounted = {m.commit for m in self.store.list_mounts(repo)}
        dropped = []
        for commit in self.store.list_commits(repo):
            if (
                commit.pruned
                and commit.id not in mounted
                and self.snapshot_on_disk(repo, commit.id)
            ):
                self.pool.delete_subvolume(self.commit_path(repo, commit.id))
                dropped.append(commit.id)
        return dropped

    # branches

    def find_branch(self, repo: str, name: str) -> BranchRecord | None:
        """The branch, or None."""
        return self.store.get_branch(repo, name)

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

    def ensure_branch(self, repo: str, name: str, start: str | None) -> BranchRecord:
        """The branch, created with head ``start`` (a commit id, or None) if absent.

        Its working copy is made on first use (``working_copy``), so a crash between the
        two leaves nothing to clean up.
        """
        check_component(name, "branch")
        with self.repo_lock(repo):
            existing = self.store.get_branch(repo, name)
            if existing is not None:
                return existing
            record = BranchRecord(repo=repo, name=name, head=start, created=self.clock())
            self.store.create_branch(record)
            log.info("repo=%s branch=%s created at commit=%s", repo, name, start)
            return record

    def working_copy(self, repo: str, branch: str) -> Path:
        """The branch's working copy, made from its head (or empty) if it does not exist."""
        path = self.branch_path(repo, branch)
        with (
            self.branch_lock(repo, branch),
            self.repo_lock(repo),
            self.space.reporting(f"making the working copy of {repo}/{branch}"),
        ):
            record = self.get_branch(repo, branch)
            if self.pool.is_subvolume(path):
                if not self._is_stale(record):
                    return path
                self._retire_stale(record)
            source = self.local_commit(repo, record.head) if record.head is not None else None
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

    @staticmethod
    def _is_stale(record: BranchRecord) -> bool:
        """True when this node's working copy was made from or committed as another
        commit than the head (another node has written the branch since)."""
        return record.clean_generation is not None and record.working_base != record.head

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
        path = self.branch_path(record.repo, record.name)
        if not self.pool.changed_since(path, record.clean_generation):
            self.pool.delete_subvolume(path)
            return None
        base = (record.working_base or "empty")[:12]
        keep = (
            self.repo_dir(record.repo)
            / "detached"
            / f"{record.name}.{base}.{self.clock():%Y%m%dT%H%M%S%f}"
        )
        keep.parent.mkdir(parents=True, exist_ok=True)
        path.rename(keep)
        return keep

    def set_aside_working_copy(self, repo: str, branch: str, why: str) -> Path | None:
        """Before a branch's working copy is replaced whole (a pipeline's output): a
        clean copy is deleted, a dirty one moved to ``detached/`` and logged with
        ``why``. Returns where a dirty copy was kept, or None.

        Raises:
            InUse: the branch is mounted.
        """
        with self.branch_lock(repo, branch), self.repo_lock(repo):
            record = self.get_branch(repo, branch)
            path = self.branch_path(repo, branch)
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

    def create_branch(self, repo: str, name: str, start: Ref | None = None) -> BranchRecord:
        """Create branch ``name`` at the commit ``start`` names (default: master's head).

        Raises:
            InvalidName, NotFound: a bad name or a ref that names nothing.
            Conflict: the branch exists.
        """
        check_component(name, "branch")
        with self.repo_lock(repo):
            self.get_repo(repo)
            if self.store.get_branch(repo, name) is not None:
                raise Conflict(f"branch {repo}/{name} exists already")
            if start is not None:
                head: str | None = self.require_data(self.resolve_commit(repo, start)).id
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
        with self.branch_lock(repo, name), self.repo_lock(repo):
            self.get_branch(repo, name)
            users = [u for u in self.uses(repo) if u.branch == name]
            if users:
                raise in_use_refusal(f"branch {repo}/{name}", users)
            self.refuse_if_busy(repo, name, "delete")
            path = self.branch_path(repo, name)
            if self.pool.is_subvolume(path):
                self.pool.delete_subvolume(path)
            self.store.delete_branch(repo, name)
            self.commit_errors.clear(repo, name)
            log.info("repo=%s branch=%s deleted", repo, name)

    def reset_branch(self, repo: str, name: str, ref: Ref) -> tuple[str | None, BranchRecord]:
        """Move a branch's head to the commit ``ref`` names; the old head stays reachable
        by id. Returns the old head and the branch as it is now.

        Raises:
            NotFound: no such branch or commit. InUse: the branch is mounted.
            Conflict: its working copy holds changes no commit holds, or the head moved.
        """
        with self.branch_lock(repo, name), self.repo_lock(repo):
            old = self.get_branch(repo, name)
            target = self.require_data(self.resolve_commit(repo, ref))
            self.refuse_if_busy(repo, name, "reset")
            # The working copy goes first: it is clean (checked above), so a crash before
            # the head moves loses nothing, and the next mount makes it from the new head.
            path = self.branch_path(repo, name)
            if self.pool.is_subvolume(path):
                self.pool.delete_subvolume(path)
            self.store.move_head(
                repo, name, old.head, target.id, self.coordinator.acquire(repo, name)
            )
            log.info("repo=%s branch=%s reset from %s to %s", repo, name, old.head, target.id)
            return old.head, self.get_branch(repo, name)

    def drop_working_copy(self, repo: str, branch: str) -> None:
        """Delete a branch's CLEAN working copy after a change to it failed half way; the
        next use makes it again from the head. Only for a copy that held no uncommitted
        change before the failed change began (merge and revert check that first)."""
        path = self.branch_path(repo, branch)
        with self.branch_lock(repo, branch):
            if self.pool.is_subvolume(path):
                self.pool.delete_subvolume(path)
                log.warning("repo=%s branch=%s working copy dropped after a failure", repo, branch)

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
        if self._is_dirty(self.get_branch(repo, branch)):
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

    def _is_dirty(self, branch: BranchRecord) -> bool:
        """True when the branch's working copy holds changes no commit holds."""
        path = self.branch_path(branch.repo, branch.name)
        return self.pool.is_subvolume(path) and self.pool.changed_since(
            path, branch.clean_generation
        )

    def gc(
        self,
        repo: str,
        keep_last: int | None = None,
        older_than: timedelta | None = None,
    ) -> GcReport:
        """Delete the snapshots of old commits; their records stay, marked pruned.

        A commit is pruned when it is not among the ``keep_last`` newest and (if given)
        older than ``older_than``. Branch heads and mounted commits are always kept. A
        snapshot btrfs will not delete now (an export or a peer is reading it with
        ``btrfs send``) is deleted as soon as that read ends (``drain_pending``), or by
        the next gc. On a full pool gc uses the pool's reserve (``SpaceReserve``).

        Raises:
            InvalidRequest: neither limit given, or a negative one. NotFound: no repo.
            PoolFull: the pool is full and no reserve is left.
        """
        if keep_last is None and older_than is None:
            raise InvalidRequest("gc needs --keep-last N or --older-than DURATION (or both)")
        if keep_last is not None and not 0 <= keep_last <= MAX_KEEP_LAST:
            raise InvalidRequest(
                f"keep-last must be a whole number from 0 to {MAX_KEEP_LAST:,}, not {keep_last}"
            )
        self._drain_pending()
        return self.space.freeing(
            f"gc of repo {repo}",
            lambda: self._gc(repo, keep_last, older_than),
            after_deletes=True,
        )

    def _gc(self, repo: str, keep_last: int | None, older_than: timedelta | None) -> GcReport:
        with self.repo_lock(repo):
            self.get_repo(repo)
            commits = [c for c in self.store.list_commits(repo) if not c.pruned]
            keep = {b.head for b in self.store.list_branches(repo)}
            keep |= {m.commit for m in self.store.list_mounts(repo)}
            candidates = commits[keep_last:] if keep_last is not None else commits
            if older_than is not None:
                cutoff = self.clock() - older_than
                candidates = [c for c in candidates if c.created < cutoff]
            doomed = [c.id for c in candidates if c.id not in keep]
            if not doomed:
                return GcReport([], 0)
            before = self.pool.free_bytes()
            self.store.mark_pruned(repo, doomed)
            self._delete_pruned(repo, doomed)
            freed = max(0, self.pool.free_bytes() - before)
            log.info(
                "repo=%s gc pruned %d commit(s), about %d bytes freed", repo, len(doomed), freed
            )
            return GcReport(doomed, freed)

    @contextmanager
    def pinned(self, repo: str, commit_ids: Iterable[str]) -> Iterator[None]:
        """Keep these commits' snapshots on disk while the block runs (an export sends
        them one after another, each the base of the next). A gc meanwhile marks them
        pruned as usual; their deletion waits until the block ends, then happens."""
        keys = [(repo, commit_id) for commit_id in commit_ids]
        with self._pending_lock:
            for key in keys:
                self._pins[key] = self._pins.get(key, 0) + 1
        try:
            yield
        finally:
            with self._pending_lock:
                for key in keys:
                    self._pins[key] -= 1
                    if not self._pins[key]:
                        del self._pins[key]
            self._drain_pending()

    def _delete_pruned(self, repo: str, commit_ids: list[str]) -> None:
        """Delete the snapshots of pruned commits; one that is pinned, or that btrfs
        refuses to delete now (``btrfs send`` reads it), is left pending for
        ``drain_pending``, never forgotten."""
        for commit_id in commit_ids:
            path = self.commit_path(repo, commit_id)
            if not self.pool.is_subvolume(path):
                continue
            with self._pending_lock:
                if (repo, commit_id) in self._pins:
                    self._pending_deletions.add((repo, commit_id))
                    log.info(
                        "repo=%s commit=%s pruned; its snapshot is deleted once the export "
                        "reading it ends",
                        repo,
                        commit_id,
                    )
                    continue
            try:
                self.pool.delete_subvolume(path)
            except PfsError as exc:
                with self._pending_lock:
                    self._pending_deletions.add((repo, commit_id))
                log.warning(
                    "repo=%s commit=%s pruned, but its snapshot cannot be deleted now (being "
                    "sent?); deleted when the send ends: %s",
                    repo,
                    commit_id,
                    exc,
                )

    def pending_deletions(self) -> set[tuple[str, str]]:
        """(repo, commit id) of pruned snapshots still waiting to be deleted."""
        with self._pending_lock:
            return set(self._pending_deletions)

    def drain_pending(self) -> list[str]:
        """Delete the pruned snapshots that could not be deleted earlier (call it when a
        ``btrfs send`` ends); the ids it deleted. One still busy stays pending. Never
        raises: what fails is logged and tried again at the next call."""
        return self._drain_pending()

    def pending_repo_deletions(self) -> set[str]:
        """Deleted repos whose data is still on this pool, waiting for a read to end."""
        with self._pending_lock:
            return set(self._pending_repos)

    def _drain_pending(self) -> list[str]:
        with self._pending_lock:
            waiting = sorted(self._pending_deletions)
            self._pending_deletions.difference_update(waiting)
            names = sorted(self._pending_repos)
            self._pending_repos.difference_update(names)
        freed = False
        for name in names:
            try:
                with self._repo_locks.hold(name, timeout=LOCK_TIMEOUT):
                    if self.store.get_repo(name) is not None or not self.store.repo_deleted(name):
                        continue  # made again, or finished by another path: not ours
                    self._finish_delete(name)
                freed = True
                log.info("repo=%s data of the deleted repo deleted", name)
            except PfsError as exc:
                with self._pending_lock:
                    self._pending_repos.add(name)
                log.warning("repo=%s data of the deleted repo not deleted yet: %s", name, exc)
        done = []
        for repo, commit_id in waiting:
            try:
                with self._repo_locks.hold(repo, timeout=LOCK_TIMEOUT):
                    record = self.store.get_commit(repo, commit_id)
                    if record is not None and not record.pruned:
                        continue  # not ours to delete (a later import reused the id)
                    self._delete_pruned(repo, [commit_id])
                    if (repo, commit_id) not in self.pending_deletions():
                        done.append(commit_id)
                        log.info("repo=%s commit=%s pruned snapshot deleted", repo, commit_id)
            except PfsError as exc:
                with self._pending_lock:
                    self._pending_deletions.add((repo, commit_id))
                log.warning("repo=%s commit=%s pending deletion failed: %s", repo, commit_id, exc)
        if done or freed:  # space came back: a reserve a full pool took may come back
            self.space.refill(after_deletes=True)
        return done

    def diff(
        self, repo: str, to: Ref, base: Ref | None = None
    ) -> tuple[CommitRecord | None, CommitRecord, list[Change]]:
        """What changed from ``base`` (default: the parent of ``to``) to ``to``, in time
        proportional to the change. Returns (base commit or None, to commit, changes).

        Raises:
            NotFound: no such repo or commit, or one whose data was pruned.
        """
        new = self.require_data(self.resolve_commit(repo, to))
        if base is not None:
            old: CommitRecord | None = self.require_data(self.resolve_commit(repo, base))
        else:
            old = self.require_data(self.get_commit(repo, new.parent)) if new.parent else None
        found = changes(
            self.local_commit(repo, old.id) if old is not None else None,
            self.local_commit(repo, new.id),
        )
        return old, new, found

    def require_data(self, commit: CommitRecord) -> CommitRecord:
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

    # refs and commits

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
        ``first_parent`` only the branch's own line. Reads only the commits it returns
        and their parents' records.

        An empty list for a branch with no commits yet.

        Raises:
            NotFound: no such repo, or a ref that names nothing.
        """
        self.get_repo(repo)
        branch = self.store.get_branch(repo, ref.base) if ref.plain else None
        if branch is not None and branch.head is None:
            return []
        start = self.resolve_commit(repo, ref)
        commits: list[CommitRecord] = []
        seen = {start.id}
        queue = [(-start.created.timestamp(), start.id, start)]
        while queue and (limit is None or len(commits) < limit):
            current = heapq.heappop(queue)[2]
            commits.append(current)
            parents = current.parents[:1] if first_parent else current.parents
            for parent_id in parents:
                if parent_id not in seen:
                    seen.add(parent_id)
                    parent = self.get_commit(repo, parent_id)
                    heapq.heappush(queue, (-parent.created.timestamp(), parent.id, parent))
        return commits

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
        with self.branch_lock(repo, branch):
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
        self.ensure_repo(repo)
        self.ensure_branch(repo, branch, None)
        with self.branch_lock(repo, branch):
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
            work = self.branch_path(repo, branch)
            self.set_aside_working_copy(repo, branch, f"replaced by the tree of: {message}")
            work.parent.mkdir(parents=True, exist_ok=True)
            tree.rename(work)
            return self.commit_working_copy(
                repo, branch, message=message, origin=origin, provenance=provenance, job=job
            )

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
        record = self.get_branch(repo, branch)
        path = self.branch_path(repo, branch)
        if self.pool.is_subvolume(path) and self._is_stale(record):
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
        failpoint("commit.after_intent")
        snapshot = self.commit_path(repo, commit.id)
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
        snapshot = self.commit_path(intent.commit.repo, intent.commit.id)
        if self.pool.is_subvolume(snapshot):
            self.pool.delete_subvolume(snapshot)
        self.store.abandon_commit(intent)

    # start-up

    def recover(self) -> RecoveryReport:
        """Reconcile disk and metadata after a crash; run once before serving.

        Finishes commits whose snapshot was taken, redoes those whose snapshot was not
        (the working copy still holds the data), finishes interrupted repo deletions and
        empties ``incoming/``. Snapshots it knows nothing of are reported, never deleted.
        """
        report = RecoveryReport()
        for name in self.store.list_deleted_repos():
            try:
                self._finish_delete(name)
                report.purged_repos.append(name)
            except PfsError as exc:
                log.error("repo=%s deleting its data failed again: %s", name, exc)
                report.failed.append(f"delete {name}: {exc}")
        for child in self.incoming_dir.iterdir():
            if self.pool.is_subvolume(child):
                self.pool.delete_subvolume(child)
            else:
                self.pool.delete_tree(child)
        for intent in self.store.list_intents():
            try:
                self._recover_intent(intent, report)
            except PfsError as exc:
                log.error(
                    "repo=%s commit=%s recovery failed; retried at the next start: %s",
                    intent.commit.repo,
                    intent.commit.id,
                    exc,
                )
                report.failed.append(f"commit {intent.commit.id}: {exc}")
        for repo in self.store.list_repos():
            pruned = [c.id for c in self.store.list_commits(repo.name) if c.pruned]
            self._delete_pruned(repo.name, pruned)  # a gc a crash interrupted
            folder = self.repo_dir(repo.name) / "commits"
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if self.pool.is_subvolume(child) and not self.pool.info(child).readonly:
                    # Only an interrupted receive leaves a writable subvolume here.
                    log.warning("repo=%s partial received snapshot %s deleted", repo.name, child)
                    self.pool.delete_subvolume(child)
                    continue
                if self.store.get_commit(repo.name, child.name) is None:
                    log.warning("repo=%s snapshot %s has no commit record; kept", repo.name, child)
                    report.unknown_snapshots.append(child)
        return report

    def _recover_intent(self, intent: CommitIntent, report: RecoveryReport) -> None:
        commit = intent.commit
        snapshot = self.commit_path(commit.repo, commit.id)
        branch = self.store.get_branch(commit.repo, commit.branch)
        whole = self.pool.is_subvolume(snapshot) and self.pool.info(snapshot).readonly
        if self.store.get_commit(commit.repo, commit.id) is not None:
            # The commit landed but its answer was lost: only the intent is left over.
            self.store.abandon_commit(intent)
            report.finished.append(commit.id)
            return
        if branch is not None and whole and branch.head == commit.parent:
            # Nothing else runs during start-up, so the head cannot move under us here.
            generation = self.pool.generation(self.branch_path(commit.repo, commit.branch))
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
            with self.branch_lock(commit.repo, commit.branch):
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


def _children(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []


def _apparent_size(root: Path) -> int:
    """Bytes the files under ``root`` hold (links counted as links, not followed)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total
