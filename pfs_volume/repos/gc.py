"""Giving space back: gc of old commits' snapshots, deletions btrfs refuses while a send
reads a snapshot (left pending, then drained), the data of deleted repos, and this
pool's copies of what other nodes deleted or pruned."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import InvalidRequest, PfsError
from pfs_volume.failpoints import failpoint
from pfs_volume.meta import MetadataStore
from pfs_volume.repos.layout import IMPORT_MARKER, PoolLayout, children
from pfs_volume.repos.locks import RepoLocks
from pfs_volume.repos.markers import Markers
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.snapshots import Snapshots
from pfs_volume.space import SpaceReserve

log = logging.getLogger(__name__)

MAX_KEEP_LAST = 1_000_000_000


@dataclass(frozen=True)
class GcReport:
    """What gc pruned and about how much space that gave back."""

    pruned: list[str]
    bytes_freed: int


class Collector:
    """Deletes old snapshots and deleted repos' data, now or (while a read holds them)
    as soon as it can.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        layout: where repos and snapshots live.
        locks: the repo locks.
        refs: repo records.
        snapshots: which snapshots are on disk.
        space: the pool's reserve (gc may use it on a full pool).
        clock: returns the current UTC time.
        markers: the gc markers (default: this pool's).
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        locks: RepoLocks,
        refs: Refs,
        snapshots: Snapshots,
        space: SpaceReserve,
        clock: Callable[[], datetime],
        markers: Markers | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.locks = locks
        self.refs = refs
        self.snapshots = snapshots
        self.space = space
        self.clock = clock
        self._pending_deletions: set[tuple[str, str]] = set()
        self._pending_repos: set[str] = set()
        """Deleted repos whose data btrfs would not delete yet (a send read it)."""
        self._pins: dict[tuple[str, str], int] = {}
        self._pending_lock = threading.Lock()
        self.markers = markers or Markers(layout)
        self._waiting_gcs: dict[Path, tuple[str, list[str]]] = {}
        """gc markers kept until the deletions they wait for are drained."""

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
        self.drain_pending()
        return self.space.freeing(
            f"gc of repo {repo}",
            lambda: self._gc(repo, keep_last, older_than),
            after_deletes=True,
        )

    def _gc(self, repo: str, keep_last: int | None, older_than: timedelta | None) -> GcReport:
        with self.locks.repo_lock(repo):
            self.refs.get_repo(repo)
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
            marker = self.markers.begin_gc(repo, doomed)
            failpoint("gc.after_marker")
            self.store.mark_pruned(repo, doomed)
            failpoint("gc.after_mark")
            self.delete_pruned(repo, doomed)
            self._settle_gc(marker, repo, doomed)
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
            self.drain_pending()

    def reads(self, repo: str) -> int:
        """How many pins (exports) read the repo's snapshots right now."""
        with self._pending_lock:
            return sum(n for (name, _commit), n in self._pins.items() if name == repo)

    def delete_pruned(self, repo: str, commit_ids: list[str]) -> None:
        """Delete the snapshots of pruned commits; one that is pinned, or that btrfs
        refuses to delete now (``btrfs send`` reads it), is left pending for
        ``drain_pending``, never forgotten."""
        for commit_id in commit_ids:
            path = self.layout.commit_path(repo, commit_id)
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

    def _settle_gc(self, marker: Path, repo: str, commit_ids: list[str]) -> None:
        """Remove a gc's marker once none of its deletions is left pending; until then
        ``drain_pending`` looks at it again."""
        with self._pending_lock:
            waiting = any((repo, c) in self._pending_deletions for c in commit_ids)
            if waiting:
                self._waiting_gcs[marker] = (repo, commit_ids)
            else:
                self._waiting_gcs.pop(marker, None)
        if not waiting:
            self.markers.clear(marker)

    def finish_gcs(self) -> list[str]:
        """Finish the gcs a crash interrupted (start-up): delete the snapshots of the
        commits their markers list that are pruned (a crash before the marking left the
        others unpruned; they are kept); the repos. Looks at no other commit. Raises
        StorageError, Unavailable."""
        repos = []
        for marker, repo, commit_ids in self.markers.gcs():
            records = [self.store.get_commit(repo, c) for c in commit_ids]
            pruned = [r.id for r in records if r is not None and r.pruned]
            self.delete_pruned(repo, pruned)
            self._settle_gc(marker, repo, pruned)
            repos.append(repo)
        return repos

    def finish_delete(self, name: str) -> None:
        """Delete the data of a repo whose records are gone, then its tombstone.
        Raises StorageError (btrfs refused: a send reads it), Unavailable."""
        top = self.layout.repo_dir(name)
        if top.exists():
            self.pool.delete_tree(top)
        self.store.forget_deleted_repo(name)

    def defer_repo_deletion(self, name: str) -> None:
        """Delete a deleted repo's data at the next ``drain_pending`` (a read holds it)."""
        with self._pending_lock:
            self._pending_repos.add(name)

    def pending_deletions(self) -> set[tuple[str, str]]:
        """(repo, commit id) of pruned snapshots still waiting to be deleted."""
        with self._pending_lock:
            return set(self._pending_deletions)

    def pending_repo_deletions(self) -> set[str]:
        """Deleted repos whose data is still on this pool, waiting for a read to end."""
        with self._pending_lock:
            return set(self._pending_repos)

    def drain_pending(self) -> list[str]:
        """Delete the pruned snapshots that could not be deleted earlier (call it when a
        ``btrfs send`` ends); the ids it deleted. One still busy stays pending. Never
        raises: what fails is logged and tried again at the next call."""
        with self._pending_lock:
            waiting = sorted(self._pending_deletions)
            self._pending_deletions.difference_update(waiting)
            names = sorted(self._pending_repos)
            self._pending_repos.difference_update(names)
        freed = False
        for name in names:
            try:
                with self.locks.repo_lock(name):
                    if self.store.get_repo(name) is not None or not self.store.repo_deleted(name):
                        continue  # made again, or finished by another path: not ours
                    self.finish_delete(name)
                freed = True
                log.info("repo=%s data of the deleted repo deleted", name)
            except PfsError as exc:
                with self._pending_lock:
                    self._pending_repos.add(name)
                log.warning("repo=%s data of the deleted repo not deleted yet: %s", name, exc)
        done = []
        for repo, commit_id in waiting:
            try:
                with self.locks.repo_lock(repo):
                    record = self.store.get_commit(repo, commit_id)
                    if record is not None and not record.pruned:
                        continue  # not ours to delete (a later import reused the id)
                    self.delete_pruned(repo, [commit_id])
                    if (repo, commit_id) not in self.pending_deletions():
                        done.append(commit_id)
                        log.info("repo=%s commit=%s pruned snapshot deleted", repo, commit_id)
            except PfsError as exc:
                with self._pending_lock:
                    self._pending_deletions.add((repo, commit_id))
                log.warning("repo=%s commit=%s pending deletion failed: %s", repo, commit_id, exc)
        with self._pending_lock:
            gcs = dict(self._waiting_gcs)
        for marker, (repo, commit_ids) in gcs.items():
            self._settle_gc(marker, repo, commit_ids)
        if done or freed:  # space came back: a reserve a full pool took may come back
            self.space.refill(after_deletes=True)
        return done

    def purge_deleted_repos(self) -> list[str]:
        """Remove this pool's data of repos deleted through another node (the store says
        so; a missing record alone is no evidence) that nothing here mounts; their names.

        Commit copies are deleted. A repo with working copies here is moved whole to
        ``<pool>/retired/`` instead: a working copy may hold changes no commit holds
        (invariant 1), so only a person deletes it.
        """
        removed = []
        for folder in sorted(self.layout.repos_dir.iterdir()):
            if (folder / IMPORT_MARKER).exists():
                continue  # an import in progress; start-up settles interrupted ones
            with self.locks.repo_lock(folder.name):
                if not self.store.repo_deleted(folder.name) or self.store.list_mounts(folder.name):
                    continue
                working = [p for sub in ("branches", "detached") for p in children(folder / sub)]
                if working:
                    keep = self.layout.retired_path(folder.name, self.clock())
                    keep.parent.mkdir(exist_ok=True)
                    if (folder / "commits").exists():
                        self.pool.delete_tree(folder / "commits")
                    self.pool.move(folder, keep)
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
                and self.snapshots.snapshot_on_disk(repo, commit.id)
            ):
                self.snapshots.delete(repo, commit.id)
                dropped.append(commit.id)
        return dropped
