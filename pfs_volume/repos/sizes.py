"""What each commit wrote, measured once, off the commit path.

A commit's size is the bytes of file data it wrote over its first parent (``btrfs send
--no-data`` listing: the ranges written; for a root commit, its files' sizes), measured
by one worker thread after the commit landed, so a commit costs no more than before. The
store keeps the repo's running total in the same transaction as each size
(``MetadataStore.record_commit_size``). A commit whose parent's snapshot is not here
(pruned, or not held by this node) is left unmeasured, as are commits lost from the queue
when the daemon stops: ``repo inspect`` counts them, and ``pfs fsck --repair`` measures
those it can (``measure``). Only a started meter measures in the background (the daemon
starts it, and closes it before it unmounts the pool).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from dataclasses import replace

from pfs_volume.btrfs.changes import bytes_written
from pfs_volume.errors import PfsError
from pfs_volume.meta import CommitRecord, MetadataStore
from pfs_volume.repos.layout import PoolLayout

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Commits waiting to be measured; more are left unmeasured (and logged)."""
NICENESS = 10
"""The worker's nice value (Linux: per thread)."""
CLOSE_TIMEOUT = 30.0
"""Seconds ``close`` waits for a measurement under way."""
IDLE_EXIT = 5.0
"""Seconds the worker waits for work before it ends (the next commit starts another)."""


class SizeMeter:
    """Measures commits in the background.

    Args:
        store: the metadata store (where sizes and totals go).
        layout: where the snapshots are.
    """

    def __init__(self, store: MetadataStore, layout: PoolLayout) -> None:
        self.store = store
        self.layout = layout
        self._queue: queue.Queue[CommitRecord] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._pending: set[tuple[str, str]] = set()  # (repo, id): queued or being measured
        self._worker: threading.Thread | None = None
        self._running = False

    def start(self) -> SizeMeter:
        """Measure from now on (until ``close``); before, commits stay unmeasured. The
        daemon starts it; whoever starts it must close it before the pool goes away (a
        measurement holds the pool busy). Returns self."""
        self._running = True
        return self

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Stop measuring: drop what is queued (it stays unmeasured) and wait up to
        ``timeout`` for a measurement under way; False when it is still running."""
        self._running = False
        dropped = 0
        while True:
            try:
                commit = self._queue.get_nowait()
            except queue.Empty:
                break
            self._done(commit)
            dropped += 1
        if dropped:
            log.info("%d commit(s) left unmeasured at close", dropped)
        return self.wait_idle(timeout)

    def measure_later(self, commit: CommitRecord) -> None:
        """Queue a commit this node just made (a commit listener: quick, never raises)."""
        if not self._running:
            return
        if not self._put(commit):
            log.warning("repo=%s commit=%s left unmeasured: queue full", commit.repo, commit.id)
            return
        self._start_worker()

    def _put(self, commit: CommitRecord) -> bool:
        """Queue a commit; False when the queue is full. It is pending before it is
        queued: the worker may take it at once."""
        with self._lock:
            self._pending.add((commit.repo, commit.id))
        try:
            self._queue.put_nowait(commit)
        except queue.Full:
            with self._lock:
                self._pending.discard((commit.repo, commit.id))
            return False
        return True

    def _done(self, commit: CommitRecord) -> None:
        """A queued commit measured, failed or dropped."""
        with self._lock:
            self._pending.discard((commit.repo, commit.id))
        self._queue.task_done()

    def queued(self, repo: str) -> set[str]:
        """The ids of the repo's commits queued or being measured (``pfs fsck`` leaves
        them to the meter)."""
        with self._lock:
            return {commit_id for name, commit_id in self._pending if name == repo}

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="size-meter", daemon=True)
                self._worker.start()

    def measure_imported(self, repo: str, commits: list[CommitRecord]) -> None:
        """Queue an import's kept commits (records as the export had them, under the
        name imported as), oldest first; those the queue has no room for stay unmeasured
        (logged once)."""
        if not self._running:
            return
        kept = sorted((c for c in commits if not c.pruned), key=lambda c: c.created)
        left = 0
        for commit in kept:
            if not self._put(replace(commit, repo=repo)):
                left += 1
        if left:
            log.warning("repo=%s: %d imported commits left unmeasured: queue full", repo, left)
        self._start_worker()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued commit is measured; False when ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def measure(self, commit: CommitRecord) -> int | None:
        """Measure one commit now and record its size; the size, or None when its
        parent's snapshot is not here to measure against."""
        child = self.layout.commit_path(commit.repo, commit.id)
        parent = self.layout.commit_path(commit.repo, commit.parent) if commit.parent else None
        if not child.is_dir() or (parent is not None and not parent.is_dir()):
            return None
        size = bytes_written(parent, child)
        self.store.record_commit_size(commit.repo, commit.id, size)
        return size

    def _run(self) -> None:
        # Low priority, for this thread and the btrfs processes it starts (they inherit
        # it): measuring must not slow down the commits that follow.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        while True:
            try:
                commit = self._queue.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:  # ``measure_later`` starts a worker when there is none
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            try:
                size = self.measure(commit)
                log.debug("repo=%s commit=%s wrote %s bytes", commit.repo, commit.id, size)
            except (PfsError, OSError) as exc:
                log.warning("repo=%s commit=%s left unmeasured: %s", commit.repo, commit.id, exc)
            finally:
                self._done(commit)
