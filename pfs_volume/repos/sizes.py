"""What each commit wrote, measured once, off the commit path.

A commit's size is the bytes of file data it wrote over its first parent (``btrfs send
--no-data`` listing: the ranges written; for a root commit, its files' sizes), measured
by one worker thread after the commit landed, so a commit costs no more than before. The
store keeps the repo's running total in the same transaction as each size
(``MetadataStore.record_commit_size``). A commit whose parent's snapshot is not here
(pruned, or not held by this node) is left unmeasured, as are commits lost from the queue
or being measured when the daemon stops (a stop does not wait for a slow ``btrfs send``:
its processes are killed): ``repo inspect`` counts them, and ``pfs fsck --repair``
measures those it can (``measure``). Only a started meter measures in the background (the daemon
starts it, and closes it before it unmounts the pool).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from pfs_volume.btrfs.changes import CHANGES_TIMEOUT, bytes_written
from pfs_volume.errors import PfsError
from pfs_volume.meta import CommitRecord, MetadataStore
from pfs_volume.repos.layout import PoolLayout

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Commits waiting to be measured; more are left unmeasured (and logged)."""
NICENESS = 10
"""The worker's nice value (Linux: per thread)."""
CLOSE_TIMEOUT = 5.0
"""Seconds ``close`` waits for the measurement under way to end once abandoned (its
btrfs processes are killed within ``changes.CANCEL_CHECK``; the collector's
``drain_pending`` still runs after it)."""
EXPECTED_FOR = 60.0
"""Seconds a commit about to be made counts as queued (``expect``)."""
EXPECTED_KEPT = 1_000
"""How many such commits are kept before the expired ones are dropped."""
IDLE_EXIT = 5.0
"""Seconds the worker waits for work before it ends (the next commit starts another)."""


class SizeMeter:
    """Measures commits in the background.

    Args:
        store: the metadata store (where sizes and totals go).
        layout: where the snapshots are.
        after_send: called after each measurement's ``btrfs send`` (the collector's
            ``drain_pending``: a deletion the send held up is finished then).
    """

    def __init__(
        self,
        store: MetadataStore,
        layout: PoolLayout,
        after_send: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.layout = layout
        self.after_send = after_send
        self._queue: queue.Queue[CommitRecord] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._pending: set[tuple[str, str]] = set()  # (repo, id): queued or being measured
        self._expected: dict[tuple[str, str], float] = {}  # (repo, id): about to be queued
        self._worker: threading.Thread | None = None
        self._running = False
        self._closing = threading.Event()

    def start(self) -> SizeMeter:
        """Measure from now on (until ``close``); before, commits stay unmeasured. The
        daemon starts it; whoever starts it must close it before the pool goes away (a
        measurement holds the pool busy). Returns self."""
        self._closing.clear()
        self._running = True
        return self

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Stop measuring: drop what is queued and abandon a measurement under way (each
        stays unmeasured, for ``pfs fsck --repair``), then wait up to ``timeout`` for
        the worker to be idle; False when it is still busy."""
        self._running = False
        self._closing.set()
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

    def expect(self, commit: CommitRecord) -> None:
        """Count a commit this node is about to make as queued already, from before its
        record can be seen until ``measure_later`` queues it (``EXPECTED_FOR`` seconds
        at most: a commit that fails is never queued): ``pfs fsck`` never finds it
        unsized and not queued in between (a commit-starting listener: quick)."""
        if not self._running:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._expected) >= EXPECTED_KEPT:
                self._expected = {
                    key: since
                    for key, since in self._expected.items()
                    if now - since < EXPECTED_FOR
                }
            self._expected[(commit.repo, commit.id)] = now

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
            self._expected.pop((commit.repo, commit.id), None)
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
        """The ids of the repo's commits queued, being measured or about to be queued
        (``expect``): ``pfs fsck`` leaves them to the meter. Read it before the sizes:
        a commit it does not name was measured (and its size recorded) before, or its
        record was not there yet when the commits were read."""
        now = time.monotonic()
        with self._lock:
            expected = {
                commit_id
                for (name, commit_id), since in self._expected.items()
                if name == repo and now - since < EXPECTED_FOR
            }
            return expected | {commit_id for name, commit_id in self._pending if name == repo}

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

    def measure(
        self,
        commit: CommitRecord,
        timeout: float = CHANGES_TIMEOUT,
        cancel: threading.Event | None = None,
    ) -> int | None:
        """Measure one commit now, within ``timeout`` seconds, and record its size; the
        size, or None when its parent's snapshot is not here to measure against or the
        store took no size for it (its commit is pruned or gone, or was measured
        already). Raises BtrfsCommandError (past ``timeout`` too, and once ``cancel``
        is set: the worker's measurements end so when the meter is closed)."""
        child = self.layout.commit_path(commit.repo, commit.id)
        parent = self.layout.commit_path(commit.repo, commit.parent) if commit.parent else None
        if not child.is_dir() or (parent is not None and not parent.is_dir()):
            return None
        try:
            size = bytes_written(parent, child, timeout=timeout, cancel=cancel)
        finally:
            if self.after_send is not None:
                self.after_send()
        if not self.store.record_commit_size(commit.repo, commit.id, size):
            return None
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
                size = self.measure(commit, cancel=self._closing)
                log.debug("repo=%s commit=%s wrote %s bytes", commit.repo, commit.id, size)
            except (PfsError, OSError) as exc:
                log.warning("repo=%s commit=%s left unmeasured: %s", commit.repo, commit.id, exc)
            finally:
                self._done(commit)
