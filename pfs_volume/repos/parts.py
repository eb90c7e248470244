"""The parts of one node's commit graph, built once from its store, pool and
coordinator: what the daemon wires the RepoService front and the cluster from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pfs_volume.branch_uses import UsesLookup, no_uses
from pfs_volume.btrfs import BtrfsPool
from pfs_volume.commit_errors import CommitErrors
from pfs_volume.meta import MetadataStore, utcnow
from pfs_volume.repos.catalog import Catalog
from pfs_volume.repos.commits import Commits, new_commit_id
from pfs_volume.repos.coordinator import Coordinator, SingleHost
from pfs_volume.repos.fsck import Fsck
from pfs_volume.repos.gc import Collector
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.locks import RepoLocks
from pfs_volume.repos.recovery import Recovery
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.sizes import SizeMeter
from pfs_volume.repos.snapshots import Snapshots
from pfs_volume.repos.working_copies import WorkingCopies
from pfs_volume.space import SpaceReserve


class NodeMaintenance:
    """This node's ``Maintenance``, for the cluster's repair loop and replicator.

    Args:
        locks: the branch locks (and the cluster write locks held through them).
        collector: deletions pending and deletions made elsewhere.
    """

    def __init__(self, locks: RepoLocks, collector: Collector) -> None:
        self._locks = locks
        self._collector = collector

    def release_idle_locks(self, held: list[tuple[str, str]]) -> None:
        """As ``RepoLocks.release_idle_locks``."""
        self._locks.release_idle_locks(held)

    def purge_deleted_repos(self) -> list[str]:
        """As ``Collector.purge_deleted_repos``."""
        return self._collector.purge_deleted_repos()

    def drop_pruned_copies(self, repo: str) -> list[str]:
        """As ``Collector.drop_pruned_copies``."""
        return self._collector.drop_pruned_copies(repo)

    def drain_pending(self) -> list[str]:
        """As ``Collector.drain_pending``."""
        return self._collector.drain_pending()


@dataclass(frozen=True)
class RepoParts:
    """The parts of one node's commit graph, each with one job."""

    store: MetadataStore
    pool: BtrfsPool
    coordinator: Coordinator
    clock: Callable[[], datetime]
    new_id: Callable[[], str]
    uses: UsesLookup
    space: SpaceReserve
    commit_errors: CommitErrors
    layout: PoolLayout
    locks: RepoLocks
    snapshots: Snapshots
    refs: Refs
    working_copies: WorkingCopies
    collector: Collector
    catalog: Catalog
    commits: Commits
    recovery: Recovery
    fsck: Fsck
    maintenance: NodeMaintenance
    sizes: SizeMeter

    @classmethod
    def build(
        cls,
        store: MetadataStore,
        pool: BtrfsPool,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_commit_id,
        coordinator: Coordinator | None = None,
        uses: UsesLookup = no_uses,
    ) -> RepoParts:
        """Build the parts (and the top folders of the pool).

        Args:
            store: the metadata store.
            pool: the btrfs pool.
            clock: returns the current UTC time (injected so tests can fix it).
            new_id: returns a fresh commit id.
            coordinator: placement, write locks and replication (default: a single host).
            uses: which pipelines read or write a repo's branches (default: none).
        """
        coordinator = coordinator or SingleHost()
        space = SpaceReserve(pool)
        commit_errors = CommitErrors(store, clock)
        layout = PoolLayout(pool.root)
        locks = RepoLocks(store, coordinator)
        snapshots = Snapshots(store, pool, layout, coordinator)
        refs = Refs(store, layout, snapshots)
        working_copies = WorkingCopies(store, pool, layout, locks, snapshots, refs, space, clock)
        collector = Collector(store, pool, layout, locks, refs, snapshots, space, clock)
        catalog = Catalog(
            store,
            pool,
            layout,
            locks,
            refs,
            working_copies,
            collector,
            coordinator,
            space,
            commit_errors,
            uses,
            clock,
        )
        commits = Commits(
            store,
            pool,
            layout,
            locks,
            refs,
            working_copies,
            catalog,
            coordinator,
            space,
            commit_errors,
            clock,
            new_id,
        )
        sizes = SizeMeter(store, layout, after_send=collector.drain_pending)
        commits.on_commit_starting(sizes.expect)
        commits.on_commit(sizes.measure_later)
        return cls(
            store=store,
            pool=pool,
            coordinator=coordinator,
            clock=clock,
            new_id=new_id,
            uses=uses,
            space=space,
            commit_errors=commit_errors,
            layout=layout,
            locks=locks,
            snapshots=snapshots,
            refs=refs,
            working_copies=working_copies,
            collector=collector,
            catalog=catalog,
            commits=commits,
            recovery=Recovery(store, pool, layout, commits, collector, snapshots),
            fsck=Fsck(store, pool, layout, locks, snapshots, working_copies, collector, sizes),
            maintenance=NodeMaintenance(locks, collector),
            sizes=sizes,
        )
