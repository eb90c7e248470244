"""The locks of the commit graph: one per branch and one per repo on this node, and the
branch's cluster-wide write lock taken through the coordinator.

Two kinds of lock, always taken in this order: a branch's lock (held while its working
copy is mounted, committed or made) and then its repo's lock (held while the repo, its
branches and working copies are created or deleted, and while a mount is recorded).
Commits take only the branch lock, so a commit never waits for another repo or branch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pfs_volume.errors import Busy, LeaseLost, PfsError, Unavailable
from pfs_volume.meta import MetadataStore
from pfs_volume.repos.coordinator import Coordinator

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 50.0
"""Seconds an operation waits for a repo or branch lock: below the 60 s Docker gives
every plugin call but Mount, so a busy repo answers "busy" instead of timing out."""


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

    @contextmanager
    def try_hold(self, *key: str) -> Iterator[bool]:
        """Hold the lock of ``key`` for the ``with`` block if it is free now (True),
        else hold nothing (False)."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()


class RepoLocks:
    """The branch and repo locks of one node, and how deep each branch's cluster write
    lock is held here.

    Args:
        store: the metadata store (a branch mounted here keeps its write lock).
        coordinator: the cluster's write locks.
    """

    def __init__(self, store: MetadataStore, coordinator: Coordinator) -> None:
        self.store = store
        self.coordinator = coordinator
        self._repo_locks = KeyedLocks()
        self._branch_locks = KeyedLocks()
        self._write_depth: dict[tuple[str, str], int] = {}

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
        """Serialise creating and deleting a repo, its branches, working copies and mounts.

        Raises:
            Busy: another operation holds the repo too long.
        """
        with self._repo_locks.hold(repo):
            yield
