"""Start-up: reconcile disk and metadata after a crash, before serving."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import PfsError
from pfs_volume.meta import MetadataStore
from pfs_volume.repos.commits import Commits
from pfs_volume.repos.gc import Collector
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.snapshots import Snapshots

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What start-up reconciliation did."""

    finished: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    purged_repos: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    gcs_finished: list[str] = field(default_factory=list)
    """Repos whose interrupted gc was finished."""
    receives: list[str] = field(default_factory=list)
    """``repo@commit: what was done`` for each receive a crash cut off."""


class Recovery:
    """Start-up reconciliation of one node's pool.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        layout: where repos and imports live.
        commits: settles interrupted commits.
        collector: finishes interrupted deletions and gcs.
        snapshots: settles interrupted receives.
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        commits: Commits,
        collector: Collector,
        snapshots: Snapshots,
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.commits = commits
        self.collector = collector
        self.snapshots = snapshots

    def recover(self) -> RecoveryReport:
        """Reconcile disk and metadata after a crash; run once before serving.

        Looks only at what a crash can have left unfinished, never at every commit:
        finishes commits whose snapshot was taken and redoes those whose snapshot was not
        (their intents), finishes interrupted repo deletions (tombstones) and gcs (their
        markers), settles receives a crash cut off (their markers) and empties
        ``incoming/``. ``Fsck`` checks everything else, on request.
        """
        report = RecoveryReport()
        for name in self.store.list_deleted_repos():
            try:
                self.collector.finish_delete(name)
                report.purged_repos.append(name)
            except PfsError as exc:
                log.error("repo=%s deleting its data failed again: %s", name, exc)
                report.failed.append(f"delete {name}: {exc}")
        for child in self.layout.incoming_dir.iterdir():
            if self.pool.is_subvolume(child):
                self.pool.delete_subvolume(child)
            else:
                self.pool.delete_tree(child)
        for intent in self.store.list_intents():
            try:
                self.commits.recover_intent(intent, report)
            except PfsError as exc:
                log.error(
                    "repo=%s commit=%s recovery failed; retried at the next start: %s",
                    intent.commit.repo,
                    intent.commit.id,
                    exc,
                )
                report.failed.append(f"commit {intent.commit.id}: {exc}")
        try:
            report.gcs_finished = self.collector.finish_gcs()
        except PfsError as exc:
            log.error("finishing interrupted gcs failed; retried at the next start: %s", exc)
            report.failed.append(f"gc: {exc}")
        for marker, repo, commit_id in self.snapshots.markers.receives():
            try:
                done = self.snapshots.settle_receive(repo, commit_id)
                log.info("repo=%s commit=%s interrupted receive: %s", repo, commit_id, done)
                report.receives.append(f"{repo}@{commit_id}: {done}")
                self.snapshots.markers.clear(marker)
            except PfsError as exc:
                log.error("repo=%s commit=%s receive not settled: %s", repo, commit_id, exc)
                report.failed.append(f"receive {repo}@{commit_id}: {exc}")
        return report
