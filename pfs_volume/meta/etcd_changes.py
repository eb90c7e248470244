"""The etcd store's change token for List: it moves with every write that can change
what List shows, and stays put across membership heartbeats.

The cluster's revision moves with every write to etcd, and every node rewrites its
``nodes/<id>`` key at each lease renewal (every TTL/3): a token that is the revision moves
every couple of seconds in an idle cluster, and List's kept answer (``kept_listing``) is
almost never reused. Here a watch of the whole keyspace counts the writes that matter
(``relevant``) and notes which repo, part of a repo or volume name each touched
(``note_write``, so that ``since`` can tell List which volumes to work out again), and
the token is ``(generation, count)`` once the watch has delivered every change up to
the revision read at the call: the revision still comes from etcd on every
call, so a write that returned before the call, on this node or another, is always in
what the watch delivered or the token falls back to the revision itself.

Why nothing is missed:

* etcd's revision grows by one for each write transaction that changes a key, and each
  such change is an event of a whole-keyspace watch (the watch covers every key, not only
  the store's prefix, so that revisions moved by keys outside it, such as the exactly-once
  markers, are delivered too and "delivered up to R" can be told). Without ``fragment``,
  etcd never splits one revision's events over two watch replies, so once a reply is
  handled every event of its revisions is counted.
* ``token`` reads the revision R first, then returns ``(generation, count)`` only when the
  watch of that generation has delivered up to R: every relevant change up to R is in
  ``count``. Changes after R are after the read and move the next token.
* A watch starts from ``R + 1`` of a revision R read just before, with a new generation,
  so a token of an earlier watch never comes back. While no watch has delivered up to the
  revision read (not started yet, lost, ended, lagging beyond ``CATCH_UP``) the token is
  ``("revision", epoch, R)``, as the plain revision token was: right, and never equal to a
  counted one.
* etcd restored from a backup (or a new cluster at the same endpoints) starts again at a
  lower revision, with other records: a revision read below one already seen (read or
  delivered before the call) ends the current watch, whatever state it is in (lost and
  not replaced yet, or half-open and not aware), and starts a new ``epoch`` that the
  fallback token carries, so no token of the old history comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from urllib.parse import unquote

from pfs_volume.meta.change_log import BRANCH, COMMIT, ChangeLog, StoreChanges
from pfs_volume.meta.etcd_client import EtcdClient
from pfs_volume.meta.etcd_watch import PrefixWatch, WatchEvent

log = logging.getLogger(__name__)

CATCH_UP = 0.2
"""Seconds ``token`` waits for the watch to deliver up to the revision it read (it is
usually there within a millisecond); past that the token is the revision."""
RESTART_AFTER = 1.0
"""Seconds between starts of a watch, so one that cannot run is not retried on every
call (the token is the revision meanwhile)."""
IRRELEVANT = ("nodes", "locks")
"""Shared key kinds List never reads: membership (rewritten at each lease renewal) and
write locks. Everything else under the store's prefix counts, but ``local/<node>/`` of
another node (List reads this node's volume names and working copy state only)."""

ALL_KEYS = ""
"""The watch's prefix: every key (``PrefixWatch`` watches from "\\0" to the end)."""


REPO_KINDS = ("repos", "imports", "gone")
"""Shared key kinds whose second component is the repo they belong to as a whole."""
PART_KINDS = {"branches": BRANCH, "commits": COMMIT}
"""Shared key kinds ``KIND/<repo>/<name>`` that are one part of a repo (``Part``)."""
LOCAL_REPO_KINDS = ("deleted",)
"""This node's key kinds (``local/<node>/KIND/<repo>...``) that belong to one repo."""
LOCAL_PART_KINDS = {"wc": BRANCH}
"""This node's key kinds ``local/<node>/KIND/<repo>/<name>`` that are one part of a repo
(a branch's working copy state is read with its record)."""
UNREAD = ("docs", "log", "sizes", "commit_sizes")
LOCAL_UNREAD = ("mounts", "intents")
"""Key kinds List never reads what it shows from: documents, the log's index, sizes,
mount records (a mountpoint is where the target is, mounted or not) and commit intents
(a commit being made is not in the log until its record is). Their writes move the
token but touch no repo."""


def note_write(log: ChangeLog, key: str, prefix: str) -> None:
    """Note in ``log`` a write of ``key`` (a ``relevant`` one): the repo or the part of a
    repo it belongs to, the volume names, nothing (a kind List never reads) or, for a key
    of a kind not known here, everything."""
    kind, _, rest = key[len(prefix) + 1 :].partition("/")
    if kind == "local":
        kind, _, rest = rest.partition("/")[2].partition("/")
        if kind == "volumes" and rest:
            log.note(volumes=(unquote(rest),))
            return
        unread, whole, parts = kind in LOCAL_UNREAD, kind in LOCAL_REPO_KINDS, LOCAL_PART_KINDS
    else:
        unread, whole, parts = kind in UNREAD, kind in REPO_KINDS, PART_KINDS
    if unread:
        log.note()
        return
    repo, _, name = rest.partition("/")
    if kind in parts and repo and name and "/" not in name:
        log.note(parts=((repo, parts[kind], name),))
    elif (whole or kind in parts) and repo:
        log.note((repo,))
    else:
        log.note(everything=True)


def relevant(key: str, prefix: str, node_id: str) -> bool:
    """True when a change of ``key`` may change what this node's List shows: a key under
    the store's ``prefix`` that is neither a membership key, a write lock, nor another
    node's own record. An unknown kind counts."""
    if not key.startswith(prefix + "/"):
        return False
    kind, _, rest = key[len(prefix) + 1 :].partition("/")
    if kind in IRRELEVANT:
        return False
    if kind == "local":
        return rest.partition("/")[0] == node_id
    return True


@dataclass
class _Generation:
    """One watch's view: the last revision it delivered and the relevant changes it saw."""

    number: int
    delivered: int
    log: ChangeLog = field(default_factory=ChangeLog)
    """The relevant changes seen, one number each, and the repos they touched."""
    watch: PrefixWatch | None = None


class EtcdChanges:
    """Counts the writes that can change this node's List, from a watch of all keys.

    Args:
        client: the cluster's client (its revision and endpoints).
        prefix: the store's key prefix.
        node_id: this node's id (its own ``local/<node>/`` records count).
        silence_limit: passed to the watch (``PrefixWatch``): in a cluster every node
            rewrites its key at each lease renewal, so a watch silent for longer is lost.
        watch: makes the watch (``PrefixWatch`` unless a test hands in another).
    """

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        node_id: str,
        silence_limit: float | None = None,
        watch: Callable[..., PrefixWatch] = PrefixWatch,
    ) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.node_id = node_id
        self.silence_limit = silence_limit
        self._make_watch = watch
        self._changed = threading.Condition()
        self._current: _Generation | None = None
        self._generations = 0
        self._started_at = -RESTART_AFTER
        self._stopped = False
        self._seen = 0
        """The highest revision read or delivered (of the current history)."""
        self._epoch = 0
        """How many times etcd's revision went back (a restore from a backup)."""

    def token(self) -> Hashable:
        """Equal tokens mean no relevant write committed in between; read it before
        reading what it guards. Starts a watch when none runs. Raises Unavailable."""
        return self._read(None).cursor

    def since(self, cursor: Hashable | None) -> StoreChanges:
        """What changed since ``cursor`` (a token this object gave, or None) and the token
        of now (``token``), read at once: the repos each relevant write touched, from the
        watch's log, when both tokens are counts of the same watch; anything otherwise
        (the watch lost, lagging, restarted, or the token a revision)."""
        return self._read(cursor)

    def _read(self, cursor: Hashable | None) -> StoreChanges:
        with self._changed:
            seen, epoch = self._seen, self._epoch
        revision = self.client.revision()
        retired: _Generation | None = None
        with self._changed:
            if epoch != self._epoch:  # read across a restore another call noticed
                return StoreChanges(object(), None, None)  # equal to no other token
            if revision < seen:  # etcd's history was replaced: no old token stands
                log.warning("etcd's revision went back from %d to %d", seen, revision)
                retired, self._current = self._current, None
                self._epoch += 1
                self._started_at = -RESTART_AFTER
                self._seen = revision
            self._seen = max(self._seen, revision)
            token = self._token(revision, cursor)
        if retired is not None and retired.watch is not None:
            retired.watch.stop(timeout=0.0)  # List does not wait: its thread ends alone
        return token

    def _token(self, revision: int, cursor: Hashable | None) -> StoreChanges:
        """``since`` for the revision it read. Called with the lock held."""
        current = self._current
        if (current is None or current.watch is None) and self._may_start():
            current = self._start(revision)
        if current is not None:
            if current.watch is not None:
                self._changed.wait_for(
                    lambda: current.delivered >= revision or current.watch is None, CATCH_UP
                )
            if current.delivered >= revision:
                found = current.log.changes(
                    cursor[1] if isinstance(cursor, tuple) and cursor[0] == current.number else None
                )
                return StoreChanges(
                    (current.number, found.cursor), found.repos, found.volumes, found.parts
                )
        return StoreChanges(("revision", self._epoch, revision), None, None)

    def stop(self) -> None:
        """Stop the watch (tokens are the revision from now on)."""
        with self._changed:
            self._stopped = True
            current, self._current = self._current, None
        if current is not None and current.watch is not None:
            current.watch.stop()

    @property
    def watching(self) -> bool:
        """True while a watch runs."""
        with self._changed:
            return self._current is not None and self._current.watch is not None

    def _may_start(self) -> bool:
        return not self._stopped and time.monotonic() - self._started_at >= RESTART_AFTER

    def _start(self, revision: int) -> _Generation:
        """A new generation whose watch starts right after ``revision`` (read before any
        read its tokens guard). Called with the lock held."""
        self._generations += 1
        self._started_at = time.monotonic()
        generation = _Generation(self._generations, delivered=revision)

        def on_events(events: list[WatchEvent]) -> None:
            with self._changed:
                for event in events:
                    if relevant(event.key, self.prefix, self.node_id):
                        note_write(generation.log, event.key, self.prefix)
                generation.delivered = max(generation.delivered, *(e.revision for e in events))
                if self._current is generation:
                    self._seen = max(self._seen, generation.delivered)
                self._changed.notify_all()

        def on_lost(reason: str) -> None:
            with self._changed:
                lost, generation.watch = generation.watch, None
                self._changed.notify_all()
            if lost is not None:
                lost.stop()  # its session's connections
            log.info("change token watch lost, the revision serves until a new one: %s", reason)

        generation.watch = self._make_watch(
            self.client.endpoints,
            ALL_KEYS,
            revision + 1,
            on_events,
            on_lost,
            silence_limit=self.silence_limit,
        )
        self._current = generation
        generation.watch.start()
        return generation
