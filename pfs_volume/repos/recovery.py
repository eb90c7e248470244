"""Start-up: reconcile disk and metadata after a crash, before serving."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import PfsError
from pfs_volume.meta import MetadataStore
from pfs_volume.repos.commits import Commits
from pfs_volume.repos.gc import Collector
from pfs_volume.repos.layout import PoolLayout

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What start-up reconciliation did."""

    finished: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    purged_repos: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unknown_snapshots: list[Path] = field(default_factory=list)


class Recovery:
    """Start-up reconciliation of one node's pool.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        layout: where repos and imports live.
        commits: settles interrupted commits.
        collector: finishes interrupted deletions and gcs.
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        commits: Commits,
        collector: Collector,
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.commits = commits
        self.collector = collector

    def recover(self) -> RecoveryReport:
        """Reconcile disk and metadata after a crash; run once before serving.

        Finishes commits whose snapshot was taken, redoes those whose snapshot was not
        (the working copy still holds the data), finishes interrupted repo deletions and
        empties ``incoming/``. Snapshots it knows nothing of are reported, never deleted.
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
        for repo in self.store.list_repos():
            pruned = [c.id for c in self.store.list_commits(repo.name) if c.pruned]
            self.collector.delete_pruned(repo.name, pruned)  # a gc a crash interrupted
            folder = self.layout.repo_dir(repo.name) / "commits"
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if self.pool.is_subvolume(child) and not self.pool.info(child).readonly:
                    # Only an interrupted receive leaves a writable subvolume here.
                    log.warning("repo=%s partial received snapshot %s deleted", repo.name, child)
                    self.pool.delete_subvolume(child)
                    continue
                if self.store.get_commit(repo.name, child.name) is None:
                    log.warning("repo=%s snapshot %s has no commit record; kept", repo.name, child)
                    report.unknown_snapshots.append(child)
        return report
