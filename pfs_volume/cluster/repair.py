"""Repair driven by etcd changes, with a slow full sweep underneath.

Repair restores what the records say this node should have: a copy of every commit of
every repo placed here, none of pruned commits or of repos deleted elsewhere, every repo
placed on as many live nodes as it asks for, no write lock kept that nothing uses. A
pass over every commit record costs time in proportion to the records (at 100,000
commits, more than a second of this node's and of etcd's CPU), so passes are rare
(``sweep_interval``, minutes) and between them repair acts on changes only:

* a watch on the whole cluster prefix (``meta.etcd_watch``) delivers every change, in
  order, from the revision the last sweep started at;
* ``repair_events.RepairModel`` decides what each change calls for (a node came or went:
  re-place; a commit was made or its holders changed: fetch it if it is placed here; a
  commit was pruned: unlist and delete the copy; a repo was deleted: purge; ...);
* one worker thread runs that work, each item once however many changes asked for it,
  retrying failures a few times before leaving them to the next sweep.

A sweep takes etcd's revision first, starts the new watch from the next revision, then
reads: whatever changes after its reads comes through the watch, so nothing falls
between. A watch that ends for any reason (etcd restarted or unreachable, a compaction,
a dropped connection) is never resumed: the next sweep runs at once, and again every
``SWEEP_RETRY`` seconds until one succeeds and starts a new watch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from pfs_volume.cluster.locks import BranchLocks
from pfs_volume.cluster.repair_events import (
    CopyRepo,
    DropPruned,
    Fetch,
    PurgeDeleted,
    ReleaseIdleLocks,
    RepairModel,
    Replace,
    Unlist,
    Work,
)
from pfs_volume.cluster.replication import Replicator
from pfs_volume.errors import NotFound, PfsError
from pfs_volume.meta.etcd_watch import PrefixWatch, WatchEvent
from pfs_volume.repos import Maintenance

log = logging.getLogger(__name__)

DEFAULT_SWEEP_INTERVAL = 600.0
"""Seconds between full sweeps when the watch is healthy. A sweep at 100,000 commit
records costs each node about 2.5 s of its CPU and etcd about 2 s (bench/README.md,
cluster_idle.py): every 10 minutes that is under 1% of a core on average."""
SWEEP_RETRY = 2.0
"""Seconds between attempts at a sweep that failed (etcd unreachable)."""
RETRY_DELAY = 3.0
RETRY_MAX_DELAY = 120.0
RETRY_LIMIT = 8
"""A failed item of work is tried again after ``RETRY_DELAY`` seconds, doubling up to
``RETRY_MAX_DELAY``, at most this many times in all (over about five minutes: a holder cut
off for a few minutes while etcd still reaches both changes nothing in etcd when it
comes back, so only a retry brings the copy before the sweep); then the next sweep
does it."""
LOCK_SETTLE = 2.0
"""Seconds after this node's write lock appeared before checking whether it is idle:
the mount or commit that took it is done with it by then, or still holds it."""
LOCK_CHECK_INTERVAL = 5.0
"""Seconds between checks of the write locks this node holds (only while it holds any):
a release that failed while etcd was briefly away is retried."""
MAX_WAIT = 60.0
WATCH_SILENCE = 30.0
"""Seconds a watch may go without a word from etcd before it counts as lost (and a sweep
replaces it); three lease TTLs when that is longer. The repair prefix is never quiet that
long in a live cluster: every node, this one too, rewrites its key at each lease renewal
(TTL/3, about 3 s). A frozen etcd member or a proxy that stopped relaying keeps the
connection open and answers TCP keepalive, so only this notices it; a watch request it
never answers moves on to the next endpoint after as long. (Should renewals ever stop
rewriting the node key, this needs another heartbeat.)"""

_Message = tuple[PrefixWatch, list[WatchEvent] | str]


class RepairDriver:
    """This node's repair: watch, decide, act; sweep now and then.

    Args:
        replicator: fetches copies and runs full passes.
        maintenance: purges deleted repos, drops pruned copies, releases idle locks.
        locks: this node's write locks.
        sweep_interval: seconds between full sweeps.
        watch: makes the watch (endpoints, prefix, start revision and the callbacks are
            handed in, and ``silence_limit`` by name); ``PrefixWatch`` unless a test
            gives another.
    """

    def __init__(
        self,
        replicator: Replicator,
        maintenance: Maintenance,
        locks: BranchLocks,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
        watch: Callable[..., PrefixWatch] = PrefixWatch,
    ) -> None:
        registry = replicator.registry
        self.replicator = replicator
        self.maintenance = maintenance
        self.locks = locks
        self.client = registry.client
        self.prefix = registry.prefix.rstrip("/") + "/"
        self.watch_silence = max(WATCH_SILENCE, 3.0 * registry.ttl)
        """Nine lease renewals of this node (``--lease-ttl`` goes up to 300 s)."""
        self.sweep_interval = sweep_interval
        self.model = RepairModel(registry.prefix, replicator.node_id)
        self._make_watch = watch
        self._watch: PrefixWatch | None = None
        self._inbox: queue.Queue[_Message | None] = queue.Queue()
        self._pending: dict[Work, tuple[float, int]] = {}
        """Work to do: when it is due and how many attempts it had."""
        self._next_sweep = 0.0
        self._next_lock_check = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0

    def start(self) -> None:
        """Sweep at once, then watch, in the background."""
        self._thread = threading.Thread(target=self._loop, name="pfs-repair", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watch and the worker."""
        self._stopping.set()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._watch is not None:
            self._watch.stop()

    # the worker

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._turn()
            except Exception:
                # Nothing may end repair for good: a change the model cannot read, a
                # lock check that broke. Sweep again after a pause.
                log.exception("repair worker crashed; sweeping again in %g s", SWEEP_RETRY)
                self._next_sweep = time.monotonic() + SWEEP_RETRY
                self._stopping.wait(SWEEP_RETRY)

    def _turn(self) -> None:
        """One turn of the worker: a sweep or lock check when due, then the changes that
        came in, then the work that is due, then wait for the next thing to do."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + (self.sweep_interval if self._sweep() else SWEEP_RETRY)
        if now >= self._next_lock_check:
            self._next_lock_check = now + LOCK_CHECK_INTERVAL
            if self.locks.held_here():
                self._run(ReleaseIdleLocks())
        self._take(block=False)
        self._run_due()
        if self._stopping.is_set():
            return
        wake = min([self._next_sweep, self._next_lock_check, *self._due_times()])
        self._take(block=True, timeout=min(max(wake - time.monotonic(), 0.0), MAX_WAIT))

    def _due_times(self) -> list[float]:
        return [due for due, _ in self._pending.values()]

    def _take(self, block: bool, timeout: float = 0.0) -> None:
        """Turn the changes waiting in the inbox into work (waiting up to ``timeout``
        for the first when ``block``)."""
        while True:
            try:
                message = self._inbox.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return
            block = False
            if message is None:
                return
            watch, body = message
            if watch is not self._watch:
                continue  # from a watch a sweep replaced
            if isinstance(body, str):
                log.warning("repair watch lost (%s): sweeping now", body)
                self._next_sweep = 0.0
                continue
            for event in body:
                for work in self.model.apply(event):
                    delay = LOCK_SETTLE if isinstance(work, ReleaseIdleLocks) else 0.0
                    self._pending.setdefault(work, (time.monotonic() + delay, 0))

    def _run_due(self) -> None:
        now = time.monotonic()
        for work, (due, attempts) in list(self._pending.items()):
            if self._stopping.is_set() or self._next_sweep <= time.monotonic():
                return  # a sweep does it all
            if due > now:
                continue
            del self._pending[work]
            if not self._run(work) and attempts + 1 < RETRY_LIMIT:
                delay = min(RETRY_DELAY * 2**attempts, RETRY_MAX_DELAY)
                self._pending[work] = (time.monotonic() + delay, attempts + 1)

    def _run(self, work: Work) -> bool:
        """Do one item of work; False when it failed and is worth another try."""
        try:
            self._do(work)
        except NotFound as exc:
            log.info("repair %s: nothing to do: %s", work, exc)
        except PfsError as exc:
            log.warning("repair %s failed (retried): %s", work, exc)
            return False
        except Exception:
            log.exception("repair %s crashed (retried)", work)
            return False
        return True

    def _do(self, work: Work) -> None:
        store = self.replicator.store
        if isinstance(work, Fetch):
            self.replicator.fetch(work.repo, work.commit)
        elif isinstance(work, CopyRepo):
            record = store.get_repo(work.repo)
            if record is not None:
                self.replicator.repair_repo(work.repo, self.model.node_id in record.placement)
        elif isinstance(work, Replace):
            self.replicator.replace()
        elif isinstance(work, Unlist):
            store.remove_holder(work.repo, work.commit, self.model.node_id)
        elif isinstance(work, DropPruned):
            self.maintenance.drop_pruned_copies(work.repo)
        elif isinstance(work, PurgeDeleted):
            self.maintenance.purge_deleted_repos()
        elif isinstance(work, ReleaseIdleLocks):
            self.maintenance.release_idle_locks(self.locks.held_keys())

    # the sweep

    def _sweep(self) -> bool:
        """A full pass under a new watch; False when it failed (etcd unreachable)."""
        started = time.monotonic()
        try:
            revision = self.client.revision()
            self._restart_watch(revision + 1)
            self._run(ReleaseIdleLocks())
            live, repos = self.replicator.repair()
        except PfsError as exc:
            log.warning("repair sweep failed (retried in %g s): %s", SWEEP_RETRY, exc)
            return False
        except Exception:
            log.exception("repair sweep crashed (retried in %g s)", SWEEP_RETRY)
            return False
        self.model.reset(live, repos)
        self._pending.clear()
        self.sweeps += 1
        log.info(
            "repair sweep from revision %d: %d live nodes, %d repos, %.2f s",
            revision,
            len(live),
            len(repos),
            time.monotonic() - started,
        )
        return True

    def _restart_watch(self, start_revision: int) -> None:
        if self._watch is not None:
            self._watch.stop()
        holder: list[PrefixWatch] = []

        def on_events(events: list[WatchEvent]) -> None:
            self._inbox.put((holder[0], events))

        def on_lost(reason: str) -> None:
            self._inbox.put((holder[0], reason))

        watch = self._make_watch(
            self.client.endpoints,
            self.prefix,
            start_revision,
            on_events,
            on_lost,
            silence_limit=self.watch_silence,
        )
        holder.append(watch)
        self._watch = watch
        watch.start()
