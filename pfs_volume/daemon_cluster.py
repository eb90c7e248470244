"""A node's cluster parts, wired for the daemon: the etcd store, membership, write locks,
replication and repair, and the node API peers call. ``daemon.py`` makes one only when
``--etcd`` is given, so a single host never imports etcd or cluster/."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.config import Settings
from pfs_volume.errors import Conflict, StorageError, Unavailable
from pfs_volume.meta import MetadataStore
from pfs_volume.repos import Maintenance, RepoParts
from pfs_volume.startup import Backoff, StartupState
from pfs_volume.transport import TcpServer

if TYPE_CHECKING:
    from pfs_volume.cluster.replication import Replicator

log = logging.getLogger(__name__)

Opened = TypeVar("Opened")


def retrying_etcd(
    open_once: Callable[[bool], Opened],
    close: Callable[[], None],
    startup: StartupState,
    stopping: threading.Event,
    endpoints: Sequence[str],
) -> Opened | None:
    """``open_once(retrying)`` until it stops raising ``Unavailable``: a node starts
    while etcd is down, or goes away part-way through recovery, and joins once it is
    back. Between tries ``close`` drops what the failed one made, and the start-up
    message says why and when the next try is.

    Returns:
        What ``open_once`` returned; None when ``stopping`` was set meanwhile.
    """
    backoff = Backoff()
    retrying = False
    while True:
        try:
            return open_once(retrying)
        except Unavailable as exc:
            close()
            wait = backoff.next()
            startup.waiting(
                f"pfs cannot reach etcd at {', '.join(endpoints)}: retrying in {wait:g} s; {exc}"
            )
            if stopping.wait(wait):
                return None
            retrying = True


class Cluster:
    """A node's cluster parts: the etcd store, membership, locks, replication and the
    node API for peers.

    Args:
        settings: the node's settings (etcd endpoints, id, address, token).
        pool: the node's pool.
    """

    def __init__(self, settings: Settings, pool: BtrfsPool) -> None:
        from pfs_volume.cluster.coordinator import ClusterCoordinator
        from pfs_volume.cluster.locks import BranchLocks
        from pfs_volume.cluster.membership import NodeRegistry
        from pfs_volume.cluster.repair import WATCH_SILENCE
        from pfs_volume.meta.etcd import EtcdStore
        from pfs_volume.meta.etcd_changes import EtcdChanges
        from pfs_volume.meta.etcd_client import EtcdClient

        self.settings = settings
        self.client = EtcdClient(settings.etcd)
        # List's change log: the repos each write touched; heartbeats (every node's key,
        # each TTL/3) do not count.
        self.changes = EtcdChanges(
            self.client,
            settings.etcd_prefix,
            settings.node_id,
            silence_limit=max(WATCH_SILENCE, 3.0 * settings.lease_ttl),
        )
        self.store = EtcdStore(
            self.client,
            settings.node_id,
            prefix=settings.etcd_prefix,
            changed_since=self.changes.since,
        )
        self.registry = NodeRegistry(
            self.client,
            settings.node_id,
            settings.advertise.rstrip("/"),
            pool.space,
            ttl=settings.lease_ttl,
            prefix=settings.etcd_prefix,
        )
        try:
            self.registry.start()
        except BaseException:
            self.client.close()
            raise
        self.locks = BranchLocks(self.client, self.registry, prefix=settings.etcd_prefix)
        self.registry.on_lease_lost(self.locks.forget_all)
        self.coordinator = ClusterCoordinator(
            self.registry,
            self.locks,
            settings.replicas,
            settings.repair_sweep,
            self.store.list_repos,
        )
        self.replicator: Replicator | None = None
        self.maintenance: Maintenance | None = None

    def replicate(self, parts: RepoParts) -> None:
        """Make the replicator from the commit graph's parts (not started: ``start``
        hands it to the coordinator after start-up recovery)."""
        from pfs_volume.cluster.peer import PeerClient
        from pfs_volume.cluster.replication import Replicator

        self.replicator = Replicator(
            parts.store,
            parts.layout,
            parts.snapshots,
            parts.refs,
            parts.maintenance,
            self.registry,
            PeerClient(self.settings.cluster_token),
        )
        self.maintenance = parts.maintenance

    def start(self) -> TcpServer:
        """Serve the node API, start pushing and repairing (start-up recovery settled
        the receives a crash cut off).

        Raises:
            StorageError: ``replicate`` was not called first.
        """
        from pfs_volume.api.peer import create_peer_app

        if self.replicator is None or self.maintenance is None:
            raise StorageError("the replicator is made from the commit graph's parts first")
        replicator = self.replicator
        self.coordinator.attach(replicator, self.maintenance)
        host, port = self.settings.listen
        server = TcpServer(
            create_peer_app(replicator, self.settings.cluster_token), host, port, "node API"
        )
        server.start()
        self.coordinator.start()
        return server

    def relock(self, store: MetadataStore) -> None:
        """Take the write locks of the branches containers here still have mounted (after
        a restart); a branch another node took meanwhile is logged, and its last unmount
        here keeps the changes without committing them."""
        for mount in store.list_mounts():
            if mount.branch is None:
                continue
            try:
                self.coordinator.acquire(mount.repo, mount.branch)
            except Conflict as exc:
                log.error(
                    "repo=%s branch=%s mount=%s still mounted here, but: %s",
                    mount.repo,
                    mount.branch,
                    mount.id,
                    exc,
                )

    def stop(self, leave: bool = True) -> None:
        """Stop background work; with ``leave``, give the lease back (the node leaves at
        once and its locks go), else let it expire."""
        self.coordinator.stop()
        self.changes.stop()
        self.registry.stop(revoke=leave)
        self.client.close()
