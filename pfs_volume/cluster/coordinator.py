"""The cluster's answer to what the commit graph needs (``repos.Coordinator``):
placement over live nodes, etcd write locks, fetch and push through peers, and the
repair that restores placement and copies (``cluster/repair.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from pfs_volume.cluster import placement
from pfs_volume.cluster.loads import PlacementLoads
from pfs_volume.cluster.locks import BranchLocks
from pfs_volume.cluster.membership import NodeRegistry
from pfs_volume.cluster.repair import DEFAULT_SWEEP_INTERVAL, RepairDriver
from pfs_volume.cluster.replication import Replicator
from pfs_volume.errors import InvalidRequest, StorageError
from pfs_volume.meta import CommitRecord, Fence
from pfs_volume.repos import Maintenance, Placement

log = logging.getLogger(__name__)

DEFAULT_REPLICAS = 2
MAX_REPLICAS = 16


def check_replicas(replicas: int) -> int:
    """The replica count, if it is within 1..MAX_REPLICAS. Raises InvalidRequest."""
    if (
        isinstance(replicas, bool)
        or not isinstance(replicas, int)
        or not (1 <= replicas <= MAX_REPLICAS)
    ):
        raise InvalidRequest(
            f"replicas must be a whole number from 1 to {MAX_REPLICAS}, not {replicas!r}"
        )
    return replicas


class ClusterCoordinator:
    """Placement, locks and replication for one node of a cluster.

    Args:
        registry: this node's membership.
        locks: the branch write locks.
        default_replicas: copies of each commit a repo gets unless it says otherwise.
        sweep_interval: seconds between repair's full sweeps.
        repos: reads every repo record (``MetadataStore.list_repos``), for the loads a
            new repo is placed by; without it, plain rendezvous.
    """

    def __init__(
        self,
        registry: NodeRegistry,
        locks: BranchLocks,
        default_replicas: int = DEFAULT_REPLICAS,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
        repos: Callable[[], Iterable[placement.Placed]] | None = None,
    ) -> None:
        self.registry = registry
        self.locks = locks
        self.node_id = registry.node_id
        self.default_replicas = check_replicas(default_replicas)
        self.replicator: Replicator | None = None
        self.maintenance: Maintenance | None = None
        self.sweep_interval = sweep_interval
        self.repair: RepairDriver | None = None
        self.loads = None if repos is None else PlacementLoads(repos)

    def attach(self, replicator: Replicator, maintenance: Maintenance) -> None:
        """Hand over the replicator and this node's maintenance, once start-up recovery
        is done (right before ``Replicator.reconcile``, which may fetch through it).

        The one late hand-over of the wiring: the commit graph's parts need this
        coordinator (write locks, placement, fetch), and the replicator and the
        maintenance are made from those parts, so they cannot exist when the coordinator
        is made. Handing them over only after recovery also keeps a fetch from running
        while start-up still finishes what a crash left: until then ``fetch`` raises
        StorageError and a commit is pushed by the repair loop instead.
        """
        self.replicator = replicator
        self.maintenance = maintenance

    def _replicator(self) -> Replicator:
        if self.replicator is None:
            raise StorageError("replication is not set up yet")
        return self.replicator

    def place(self, repo: str, replicas: int | None) -> Placement:
        """The replica count (default if None) and the live nodes chosen for it, by
        rendezvous bounded by the nodes' loads (``placement.fill``)."""
        count = self.default_replicas if replicas is None else check_replicas(replicas)
        live = [node.id for node in self.registry.live_nodes()]
        if self.loads is None:
            return Placement(count, placement.choose(repo, live, count))
        return Placement(count, self.loads.choose(repo, live, count))

    def acquire(self, repo: str, branch: str) -> Fence | None:
        """The branch's write lock for this node. Raises Conflict, Unavailable."""
        return self.locks.acquire(repo, branch)

    def release(self, repo: str, branch: str) -> None:
        """Give the branch's write lock back."""
        self.locks.release(repo, branch)

    def fetch(self, repo: str, commit_id: str) -> None:
        """Pull a commit's snapshot from a holder. Raises NotFound, Unavailable."""
        self._replicator().fetch(repo, commit_id)

    def committed(self, commit: CommitRecord) -> None:
        """Push a new commit to the repo's replicas in the background (before start-up
        finished, the repair loop pushes it instead)."""
        if self.replicator is not None:
            self.replicator.push_later(commit)

    def start(self) -> None:
        """Start the pusher and repair (a sweep at once, then watch-driven).

        Raises:
            StorageError: ``attach`` was not called first.
        """
        replicator = self._replicator()
        if self.maintenance is None:
            raise StorageError("repair needs this node's maintenance")
        replicator.start()
        self.repair = RepairDriver(replicator, self.maintenance, self.locks, self.sweep_interval)
        self.repair.start()

    def stop(self) -> None:
        """Stop the background work."""
        if self.repair is not None:
            self.repair.stop()
        if self.replicator is not None:
            self.replicator.stop()
