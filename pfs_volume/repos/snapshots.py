"""Which commits' snapshots this node has and holds."""

from __future__ import annotations

import logging
from pathlib import Path

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.meta import CommitRecord, MetadataStore
from pfs_volume.repos.coordinator import Coordinator, SingleHost
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.locks import KeyedLocks
from pfs_volume.repos.markers import Markers

log = logging.getLogger(__name__)


class Snapshots:
    """The commits' read-only snapshots in one node's pool.

    Args:
        store: the metadata store (holder lists).
        pool: the btrfs pool.
        layout: where snapshots live.
        coordinator: this node's id, and where to fetch a snapshot from.
        markers: the receive markers (default: this pool's).
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        coordinator: Coordinator,
        markers: Markers | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.coordinator = coordinator
        self.markers = markers or Markers(layout)
        self.receives = KeyedLocks()
        """One lock per commit (repo, id), held by whatever receives its snapshot into
        this pool (a fetch) and by whatever deletes or unlists a copy it finds unaccepted,
        cut off or missing (``pfs fsck``): neither undoes what the other is doing."""

    def snapshot_on_disk(self, repo: str, commit_id: str) -> bool:
        """True when a read-only subvolume sits at the commit's place in the pool (a
        receive a crash interrupted leaves a writable one). Not proof of a whole copy:
        only ``snapshot_exists`` is."""
        path = self.layout.commit_path(repo, commit_id)
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
        return self.layout.commit_path(repo, commit_id)

    def twins(self, repo: str, commit_id: str) -> list[Path]:
        """Where other repos of this pool keep a commit with the same id: an import keeps
        commit ids, so the same export imported twice holds each commit twice, and
        ``btrfs receive`` may build on either copy (see ``streams.receive``)."""
        return [
            self.layout.commit_path(other.name, commit_id)
            for other in self.store.list_repos()
            if other.name != repo
        ]

    def delete(self, repo: str, commit_id: str) -> None:
        """Delete the commit's snapshot in this pool. Raises StorageError."""
        self.pool.delete_subvolume(self.layout.commit_path(repo, commit_id))

    def discard_partial(self, repo: str, commit_id: str) -> None:
        """Delete whatever subvolume sits at the commit's place (a receive a crash cut
        off leaves a writable one), before a new receive there. Raises StorageError."""
        path = self.layout.commit_path(repo, commit_id)
        if self.pool.is_subvolume(path):
            self.pool.delete_subvolume(path)

    def begin_receive(self, repo: str, commit_id: str) -> None:
        """Leave a durable marker before a copy of the commit is received here, so that
        start-up settles a receive a crash cut off without listing ``commits/``."""
        self.markers.begin_receive(repo, commit_id)

    def end_receive(self, repo: str, commit_id: str) -> None:
        """The receive's copy is recorded (or given up): its marker goes."""
        self.markers.end_receive(repo, commit_id)

    def settle_receive(self, repo: str, commit_id: str) -> str:
        """Settle one commit a receive was under way for when the daemon stopped; what
        was done (for the log).

        A writable subvolume there is a partial receive: deleted. A read-only copy this
        node is not listed as holding is a receive cut off at a clean end of its input:
        deleted when another node holds the commit, else kept but never served. A copy
        listed but missing is unlisted. Raises StorageError, Unavailable.
        """
        path = self.layout.commit_path(repo, commit_id)
        record = self.store.get_commit(repo, commit_id)
        on_disk = self.pool.is_subvolume(path)
        listed = record is not None and self.coordinator.node_id in record.holders
        if on_disk and not self.pool.info(path).readonly:
            if listed:
                self.store.remove_holder(repo, commit_id, self.coordinator.node_id)
            self.pool.delete_subvolume(path)
            return "partial copy deleted"
        if on_disk and not listed:
            if record is not None and record.holders:
                self.pool.delete_subvolume(path)
                return "copy never accepted: deleted"
            log.warning(
                "repo=%s commit=%s copy here is not recorded and no node holds the commit: "
                "kept, not served",
                repo,
                commit_id,
            )
            return "copy not recorded: kept"
        if listed and not on_disk:
            self.store.remove_holder(repo, commit_id, self.coordinator.node_id)
            return "listed copy missing: unlisted"
        return "nothing to do"
