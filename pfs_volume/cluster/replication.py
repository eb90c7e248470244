"""Moving commits between nodes: fetch on demand, push after a commit, repair.

Every copy is made the same way: the node that needs a commit pulls its send stream
from a live holder, incremental against the newest ancestor both have, receives it
straight into ``repos/<repo>/commits/`` and records itself as a holder. A receive that
does not finish leaves a writable subvolume there, which is deleted at once (or at
start-up, which finds it by the receive's marker: ``Snapshots.begin_receive``) and is
never taken for a commit: only read-only ones are.

A push is a request to a replica to pull: the stream still flows from this node to the
replica, and the receiving side alone decides what it has.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator

from pfs_volume.btrfs import streams
from pfs_volume.cluster import placement
from pfs_volume.cluster.membership import NodeInfo, NodeRegistry
from pfs_volume.cluster.peer import PeerClient
from pfs_volume.errors import (
    Conflict,
    NotFound,
    PfsError,
    StorageError,
    StreamRefused,
    Unavailable,
)
from pfs_volume.failpoints import failpoint
from pfs_volume.frames import encode_frames
from pfs_volume.meta import CommitRecord, MetadataStore, RepoRecord
from pfs_volume.repos import Maintenance, PoolLayout
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.snapshots import Snapshots

log = logging.getLogger(__name__)

FETCH_LOCK_TIMEOUT = 100.0
"""Seconds a mount waits for a fetch of the same commit already under way: inside the
two minutes Docker gives a Mount."""
ANCESTOR_SEARCH = 64
"""How many generations back a fetch looks for a common base."""
PUSH_ATTEMPTS = 3


class Replicator:
    """This node's side of replication.

    Args:
        store: the metadata store.
        layout: where commits live in this node's pool.
        snapshots: which snapshots this node has and holds.
        refs: commit and repo records.
        maintenance: drains the deletions a send held up.
        registry: membership (live nodes and their addresses).
        peers: the client for other nodes' APIs.
    """

    def __init__(
        self,
        store: MetadataStore,
        layout: PoolLayout,
        snapshots: Snapshots,
        refs: Refs,
        maintenance: Maintenance,
        registry: NodeRegistry,
        peers: PeerClient,
    ) -> None:
        self.store = store
        self.layout = layout
        self.snapshots = snapshots
        self.refs = refs
        self.maintenance = maintenance
        self.registry = registry
        self.peers = peers
        self.node_id = registry.node_id
        self._pushes: queue.Queue[CommitRecord | None] = queue.Queue()
        self._received: set[tuple[str, str]] = set()
        """Commits this process received whole (their end frame seen)."""
        self._pusher: threading.Thread | None = None

    # receiving

    def fetch(self, repo: str, commit_id: str, source: str | None = None) -> list[str]:
        """Bring a commit's snapshot into this pool (from ``source`` first, if given)
        and record this node as a holder; the commit's holders afterwards.

        Raises:
            NotFound: no such commit, pruned, or no live node holds it.
            StreamRefused: every holder's stream would reach outside the commit.
            Unavailable: every holder failed or etcd is unreachable.
        """
        with self.snapshots.receives.hold(repo, commit_id, timeout=FETCH_LOCK_TIMEOUT):
            commit = self.refs.require_data(self.refs.get_commit(repo, commit_id))
            listed = self.node_id in commit.holders
            if self.snapshots.snapshot_on_disk(repo, commit_id):
                if listed:
                    return list(commit.holders)
                if (repo, commit_id) not in self._received:
                    # A copy nobody accepted (see ``Snapshots.settle_receive``): never trusted.
                    self._discard_unaccepted(repo, commit_id)
                    self._pull(commit, source)
            else:
                if listed:
                    # Listed but gone: unlist it first, so that a copy this pull leaves
                    # behind if the node dies mid-way is never taken as whole.
                    self.store.remove_holder(repo, commit_id, self.node_id)
                self._pull(commit, source)
            failpoint("fetch.after_receive")
            self._received.add((repo, commit_id))
            self.store.add_holder(repo, commit_id, self.node_id)
            self.snapshots.end_receive(repo, commit_id)
            return sorted({*commit.holders, self.node_id})

    def _discard_unaccepted(self, repo: str, commit_id: str) -> None:
        if any(m.commit == commit_id for m in self.store.list_mounts(repo)):
            raise Conflict(
                f"commit {commit_id} of repo {repo}: the copy here is not recorded as whole "
                "and a container has it mounted; it is replaced once that container stops"
            )
        self.snapshots.delete(repo, commit_id)

    def _pull(self, commit: CommitRecord, source: str | None) -> None:
        live = {node.id: node for node in self.registry.live_nodes()}
        holders = [h for h in commit.holders if h in live and h != self.node_id]
        if not holders:
            raise NotFound(
                f"commit {commit.id} of repo {commit.repo} is held by no live node (holders: "
                f"{', '.join(commit.holders) or 'none'}; live: {', '.join(sorted(live))})"
            )
        ordered = placement.rank(commit.id, holders)
        if source in ordered:
            ordered.remove(source)
            ordered.insert(0, source)
        failures = []
        refusals = 0
        for holder in ordered:
            for base in dict.fromkeys([self._base(commit, holder), None]):
                try:
                    self._receive(commit, live[holder], base)
                    return
                except (Unavailable, StorageError, Conflict, NotFound, StreamRefused) as exc:
                    refusals += isinstance(exc, StreamRefused)
                    log.warning(
                        "repo=%s commit=%s fetch from node=%s (base %s) failed: %s",
                        commit.repo,
                        commit.id,
                        holder,
                        base,
                        exc,
                    )
                    failures.append(f"{holder}: {exc}")
                    if isinstance(exc, Unavailable):
                        # Unreachable, broken off or stalled: another base changes none
                        # of that, and asking again would cost a stall another
                        # READ_TIMEOUT of the two minutes Docker gives a Mount.
                        break
        if refusals == len(failures):
            # A holder that sends what no btrfs send makes: no later retry will do better.
            raise StreamRefused(
                f"commit {commit.id} of repo {commit.repo} was not fetched: every stream "
                "was refused: " + "; ".join(failures)
            )
        raise Unavailable(
            f"commit {commit.id} of repo {commit.repo} could not be fetched: " + "; ".join(failures)
        )

    def _base(self, commit: CommitRecord, holder: str) -> str | None:
        """The newest ancestor of ``commit`` in this pool that ``holder`` also holds."""
        current = commit.parent
        for _ in range(ANCESTOR_SEARCH):
            if current is None:
                return None
            record = self.store.get_commit(commit.repo, current)
            if record is None:
                return None
            if (
                not record.pruned
                and holder in record.holders
                and self.snapshots.snapshot_exists(commit.repo, current)
            ):
                return current
            current = record.parent
        return None

    def _receive(self, commit: CommitRecord, source: NodeInfo, base: str | None) -> None:
        folder = self.layout.commit_path(commit.repo, commit.id).parent
        folder.mkdir(parents=True, exist_ok=True)
        self.snapshots.begin_receive(commit.repo, commit.id)
        self.snapshots.discard_partial(commit.repo, commit.id)
        stream = self.peers.stream(source.address, commit.repo, commit.id, base)
        base_path = self.layout.commit_path(commit.repo, base) if base else None
        twins = self.snapshots.twins(commit.repo, base) if base else []
        streams.receive(
            _after_first(stream, "fetch.mid_stream"), folder, commit.id, base_path, twins
        )
        log.info(
            "repo=%s commit=%s fetched from node=%s (%s)",
            commit.repo,
            commit.id,
            source.id,
            f"incremental on {base}" if base else "full",
        )

    # sending

    def send(self, repo: str, commit_id: str, parent: str | None) -> Iterator[bytes]:
        """A commit's framed send stream for a peer, incremental against ``parent``.

        Raises (before the first chunk):
            NotFound: this node lacks the commit. Conflict: it lacks the parent.
        """
        if not self.snapshots.snapshot_exists(repo, commit_id):
            raise NotFound(f"node {self.node_id} does not hold commit {commit_id} of {repo}")
        base = None
        if parent is not None:
            if not self.snapshots.snapshot_exists(repo, parent):
                raise Conflict(
                    f"node {self.node_id} does not hold commit {parent} of {repo} to send "
                    "against; ask for a full stream"
                )
            base = self.layout.commit_path(repo, parent)
        chunks = streams.send(self.layout.commit_path(repo, commit_id), base)
        return self._then_drain(_after_first(encode_frames(chunks), "send.mid_stream"))

    def _then_drain(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks``, then the pruned snapshots a gc could not delete while they were
        sent are deleted (``Maintenance.drain_pending``)."""
        try:
            yield from chunks
        finally:
            self.maintenance.drain_pending()

    # pushing

    def start(self) -> None:
        """Start the background pusher."""
        self._pusher = threading.Thread(target=self._push_loop, name="pfs-push", daemon=True)
        self._pusher.start()

    def stop(self) -> None:
        """Stop the pusher (pushes not made yet are left to repair)."""
        self._pushes.put(None)
        if self._pusher is not None:
            self._pusher.join(timeout=5)

    def push_later(self, commit: CommitRecord) -> None:
        """Queue a commit for its repo's replicas."""
        self._pushes.put(commit)

    def _push_loop(self) -> None:
        while (commit := self._pushes.get()) is not None:
            try:
                self.push(commit.repo, commit.id)
            except PfsError as exc:
                log.warning(
                    "repo=%s commit=%s push failed (repair retries): %s",
                    commit.repo,
                    commit.id,
                    exc,
                )
            except Exception:
                log.exception(
                    "repo=%s commit=%s push crashed (repair retries)", commit.repo, commit.id
                )

    def push(self, repo: str, commit_id: str) -> list[str]:
        """Have each live replica of the repo that lacks the commit pull it from this
        node; the holders afterwards. Failures are logged and left to repair."""
        record = self.refs.get_repo(repo)
        commit = self.refs.get_commit(repo, commit_id)
        holders = set(commit.holders)
        live = {node.id: node for node in self.registry.live_nodes()}
        for node_id in record.placement:
            if node_id in holders or node_id == self.node_id or node_id not in live:
                continue
            for attempt in range(1, PUSH_ATTEMPTS + 1):
                try:
                    holders.update(
                        self.peers.request_fetch(
                            live[node_id].address, repo, commit_id, self.node_id
                        )
                    )
                    break
                except PfsError as exc:
                    log.warning(
                        "repo=%s commit=%s push to node=%s attempt %d failed: %s",
                        repo,
                        commit_id,
                        node_id,
                        attempt,
                        exc,
                    )
        return sorted(holders)

    # repair

    def repair(self) -> tuple[list[str], list[RepoRecord]]:
        """One full pass of repair (the sweep): purge repos deleted elsewhere, re-place
        repos that lost a replica, then per repo placed here or with copies here drop
        pruned copies and fetch every commit this node should hold and lacks. The live
        node ids and the repos it read (what the watch-driven repair starts from)."""
        live = [node.id for node in self.registry.live_nodes()]
        self.maintenance.purge_deleted_repos()
        repos = self.store.list_repos()
        plan = {move.repo: move.after for move in placement.repair_plan(repos, live)}
        for repo in repos:
            wanted = plan.get(repo.name, repo.placement)
            if wanted != repo.placement:
                stands = settle_placement(self.store, repo, wanted, live)
                if stands is None:
                    continue
                wanted = stands
            placed = self.node_id in wanted
            # A repo placed elsewhere has nothing to fix here unless this pool has copies
            # of it (fetched for a mount): its records are not read, so each node's sweep
            # reads about ``replicas / nodes`` of all commit records, not all.
            if placed or self.has_copies(repo.name):
                self.repair_repo(repo.name, placed)
        return live, repos

    def has_copies(self, repo: str) -> bool:
        """True when this pool has any commit snapshot of the repo."""
        folder = self.layout.repo_dir(repo) / "commits"
        return folder.is_dir() and any(folder.iterdir())

    def replace(self) -> None:
        """Re-place the repos that lost a replica over the live nodes (membership
        changed); copy those this node now is to hold."""
        live = [node.id for node in self.registry.live_nodes()]
        repos = {repo.name: repo for repo in self.store.list_repos()}
        for move in placement.repair_plan(repos.values(), live):
            stands = settle_placement(self.store, repos[move.repo], move.after, live)
            if stands is not None and self.node_id in stands and self.node_id not in move.before:
                self.repair_repo(move.repo, True)

    def repair_repo(self, repo: str, placed: bool) -> None:
        """Bring one repo's copies here in line with its records, reading its commits
        once: unlist and delete pruned copies, and when ``placed`` (this node is in its
        replica set) fetch every commit this node lacks, oldest first."""
        commits = self.store.list_commits(repo)
        if any(commit.pruned for commit in commits):
            self.maintenance.drop_pruned_copies(repo)
        for commit in reversed(commits):
            if commit.pruned:
                if self.node_id in commit.holders:
                    self.store.remove_holder(repo, commit.id, self.node_id)
                continue
            if not placed or self.node_id in commit.holders:
                continue
            try:
                self.fetch(repo, commit.id)
            except PfsError as exc:
                log.warning("repo=%s commit=%s repair fetch failed: %s", repo, commit.id, exc)


def settle_placement(
    store: MetadataStore, repo: RepoRecord, wanted: tuple[str, ...], live: list[str]
) -> tuple[str, ...] | None:
    """Write ``wanted`` as the repo's placement if it is still the one ``repo`` was read
    with (compare-and-swap); the placement that stands: ``wanted``, or the one another
    node wrote first (None: the repo is gone). A node copies by what stands, never by a
    choice of its own that lost: it may have seen other live nodes than the winner."""
    if store.set_placement(repo.name, repo.placement, wanted):
        log.info(
            "repo=%s placement %s -> %s (live nodes: %s)",
            repo.name,
            ",".join(repo.placement),
            ",".join(wanted),
            ",".join(live),
        )
        return wanted
    stored = store.get_repo(repo.name)
    return None if stored is None else stored.placement


def _after_first(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """``chunks``, with the failpoint ``name`` after the first (for crash tests)."""
    for index, chunk in enumerate(chunks):
        yield chunk
        if index == 0:
            failpoint(name)
