"""``pfs fsck``: a full check of one node's pool against the metadata, on request.

Start-up looks only at what a crash can have left unfinished (``Recovery``); this looks
at everything, O(commits + snapshots), while the daemon serves. Each repo is checked
under its repo lock. The problems it finds, and what ``repair`` does about each:

* ``snapshot-without-record``: a subvolume in ``commits/`` no record (or commit in
  flight) names. Reported only: data pfs does not understand is never deleted.
* ``partial-receive``: a writable subvolume in ``commits/`` (a receive cut off; a commit
  is never writable). Deleted.
* ``unaccepted-copy``: a read-only copy of a commit whose record does not list this
  node (a receive cut off at a clean end of its input). Deleted when another node holds
  the commit, else kept and reported.
* ``missing-snapshot``: a commit recorded as held here whose snapshot is missing.
  This node is unlisted as its holder.
* ``pruned-snapshot``: the snapshot of a commit gc pruned is still on disk (a deletion a
  crash or a send held up). Deleted (unless a container has it mounted).
* ``stale-working-copy``: a working copy made from another commit than its branch's
  head (another node wrote the branch) that nothing mounts. Set aside: deleted when
  clean, moved to ``detached/`` when it holds changes.
* ``working-copy-without-branch``: a working copy whose branch has no record.
  Reported only (it may hold changes no commit holds).
* ``data-of-deleted-repo``: a repo folder whose repo was deleted. Deleted.
* ``folder-without-repo``: a repo folder with no repo record and no deletion recorded.
  Reported only.
* ``unmeasured-commit``: kept commits held here, with their snapshots on disk, that have
  no size recorded and that the size meter is not about to measure (dropped from its
  queue, left when the daemon stopped, or a measurement failed): ``repo inspect`` leaves
  them out of the repo's size. One problem per repo for those measurable here (the
  parent's snapshot is here too, or there is no parent): measured, in up to
  ``MEASURE_BUDGET`` seconds per check (the next one goes on). One for those that are
  not (the parent pruned or not held here), with how many for which reason: kept.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import InUse, PfsError
from pfs_volume.meta import CommitRecord, MetadataStore
from pfs_volume.repos.gc import Collector
from pfs_volume.repos.layout import IMPORT_MARKER, PoolLayout, children
from pfs_volume.repos.locks import RepoLocks
from pfs_volume.repos.sizes import SizeMeter
from pfs_volume.repos.snapshots import Snapshots
from pfs_volume.repos.working_copies import WorkingCopies

log = logging.getLogger(__name__)

MEASURE_BUDGET = 60.0
"""Seconds one ``check(repair=True)`` spends measuring commits, so that its answer comes
within the 120 s the CLI waits; the commits left are measured by the next one."""
EXAMPLES = 3
"""Commit ids a problem about many commits names."""


@dataclass(frozen=True)
class Problem:
    """One thing ``pfs fsck`` found.

    Attributes:
        kind: which problem (see the module).
        repo: the repo it is in.
        what: plain words, with the commit, branch or path.
        action: what repair did or would do ("" when it only reports).
        repaired: True when repair did it.
    """

    kind: str
    repo: str
    what: str
    action: str = ""
    repaired: bool = False


@dataclass
class FsckReport:
    """What a check looked at and found."""

    repair: bool
    repos: int = 0
    commits: int = 0
    snapshots: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Unmeasured:
    """A repo's kept commits here without a size: those measurable here, oldest first,
    and the ids of the others by why not."""

    measurable: list[CommitRecord] = field(default_factory=list)
    not_measurable: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def _examples(ids: list[str]) -> str:
    """A few of ``ids``, for a problem's text."""
    shown = ", ".join(ids[:EXAMPLES])
    return f"{shown}, ..." if len(ids) > EXAMPLES else shown


class Fsck:
    """The full consistency check of one node's pool.

    Args:
        store: the metadata store.
        pool: the btrfs pool.
        layout: where repos live.
        locks: the repo locks (each repo is checked under its own).
        snapshots: which snapshots this node holds, and its receives in flight.
        working_copies: sets stale working copies aside.
        collector: deletes pruned snapshots and deleted repos' data.
        sizes: the size meter (measures commits that have no size).
    """

    def __init__(
        self,
        store: MetadataStore,
        pool: BtrfsPool,
        layout: PoolLayout,
        locks: RepoLocks,
        snapshots: Snapshots,
        working_copies: WorkingCopies,
        collector: Collector,
        sizes: SizeMeter,
    ) -> None:
        self.store = store
        self.pool = pool
        self.layout = layout
        self.locks = locks
        self.snapshots = snapshots
        self.working_copies = working_copies
        self.collector = collector
        self.sizes = sizes

    def check(self, repair: bool = False) -> FsckReport:
        """Check every repo's records against this pool; with ``repair``, fix what can
        be fixed without losing data (see the module).

        Raises:
            StorageError, Unavailable: the pool or the store failed mid-way.
        """
        report = FsckReport(repair=repair)
        repos = {r.name for r in self.store.list_repos()}
        for folder in sorted(children(self.layout.repos_dir)):
            if folder.name not in repos and not (folder / IMPORT_MARKER).exists():
                self._folder_without_repo(folder.name, report)
        deadline = time.monotonic() + MEASURE_BUDGET
        for name in sorted(repos):
            report.repos += 1
            with self.locks.repo_lock(name):
                unmeasured = self._check_repo(name, report)
            self._check_working_copies(name, report)  # takes the branch lock first
            # Outside the repo lock: measuring takes what the commits' changes take.
            self._check_sizes(name, unmeasured, deadline, report)
        return report

    def _add(self, report: FsckReport, problem: Problem) -> None:
        log.warning(
            "fsck: repo=%s %s: %s%s",
            problem.repo,
            problem.kind,
            problem.what,
            f" ({problem.action})" if problem.action else "",
        )
        report.problems.append(problem)

    def _folder_without_repo(self, name: str, report: FsckReport) -> None:
        if not self.store.repo_deleted(name):
            what = f"folder {self.layout.repo_dir(name)} has no repo record"
            self._add(report, Problem("folder-without-repo", name, what, "kept"))
            return
        with self.locks.repo_lock(name):
            done = False
            if report.repair and not self.store.list_mounts(name):
                self.collector.finish_delete(name)
                done = True
        what = f"the data of deleted repo {name} is still in the pool"
        self._add(report, Problem("data-of-deleted-repo", name, what, "deleted", done))

    def _check_repo(self, repo: str, report: FsckReport) -> Unmeasured:
        records = {c.id: c for c in self.store.list_commits(repo)}
        report.commits += len(records)
        in_flight = {i.commit.id for i in self.store.list_intents() if i.commit.repo == repo}
        receiving = {c for _path, r, c in self.snapshots.markers.receives() if r == repo}
        mounted = {m.commit for m in self.store.list_mounts(repo) if m.commit is not None}
        on_disk: set[str] = set()
        for path in sorted(children(self.layout.repo_dir(repo) / "commits")):
            name = path.name
            if not self.pool.is_subvolume(path) or name in in_flight or name in receiving:
                continue
            report.snapshots += 1
            record = records.get(name)
            if not self.pool.info(path).readonly:
                # A receive may have begun since the markers were read: looked at again,
                # and none may begin before this ends.
                with self.snapshots.receives.try_hold(repo, name) as free:
                    if free and not self._still_writable(path):
                        continue  # a fetch ended meanwhile: its copy is whole, or gone
                    busy = not free or name in mounted
                    busy = busy or self.snapshots.markers.receiving(repo, name)
                    done = report.repair and not busy
                    if done:
                        self.pool.delete_subvolume(path)
                what = f"writable subvolume {path} (a receive cut off)"
                action = "deleted" if free else "kept: a fetch of it is under way"
                self._add(report, Problem("partial-receive", repo, what, action, done))
            elif record is None:
                what = f"snapshot {path} has no commit record"
                self._add(report, Problem("snapshot-without-record", repo, what, "kept"))
            elif not self.snapshots.holds(record):
                self._unaccepted(record, mounted, report)
            else:
                on_disk.add(name)
        for record in records.values():
            if record.pruned and record.id in on_disk:
                self._pruned(record, mounted, report)
            elif not record.pruned and self.snapshots.holds(record) and record.id not in on_disk:
                if record.id in in_flight or record.id in receiving:
                    continue
                with self.snapshots.receives.try_hold(repo, record.id) as free:
                    if not free or self._fetched_since(record):
                        continue
                    done = report.repair and record.id not in mounted
                    if done:
                        node = self.snapshots.coordinator.node_id
                        self.store.remove_holder(repo, record.id, node)
                what = f"commit {record.id} is recorded as held here, but its snapshot is gone"
                self._add(report, Problem("missing-snapshot", repo, what, "unlisted", done))
        return self._unmeasured(repo, records, on_disk)

    def _unmeasured(
        self, repo: str, records: dict[str, CommitRecord], on_disk: set[str]
    ) -> Unmeasured:
        """The kept commits whose snapshots are here (``on_disk``: held here, whole) with
        no size recorded and not queued to the meter; the sizes in one read."""
        found = Unmeasured()
        kept = [records[c] for c in on_disk if not records[c].pruned]
        if not kept:
            return found
        queued = self.sizes.queued(repo)  # first: see ``SizeMeter.queued``
        sizes = self.store.commit_sizes(repo)
        for record in sorted(kept, key=lambda c: (c.created, c.id)):
            if record.id in sizes or record.id in queued:
                continue
            parent = records.get(record.parent) if record.parent else None
            if record.parent is None or (parent and not parent.pruned and parent.id in on_disk):
                found.measurable.append(record)
            elif parent is None:
                found.not_measurable["its parent has no record"].append(record.id)
            elif parent.pruned:
                found.not_measurable["its parent was pruned"].append(record.id)
            else:
                found.not_measurable["its parent's snapshot is not on this node"].append(record.id)
        return found

    def _check_sizes(
        self, repo: str, found: Unmeasured, deadline: float, report: FsckReport
    ) -> None:
        if found.not_measurable:
            ids = [c for group in found.not_measurable.values() for c in group]
            why = "; ".join(f"{len(c)}: {reason}" for reason, c in found.not_measurable.items())
            what = (
                f"{len(ids)} commit(s) have no size and cannot be measured here ({why}): "
                f"{_examples(ids)}"
            )
            self._add(report, Problem("unmeasured-commit", repo, what, "kept"))
        if not found.measurable:
            return
        action, done = "measured", False
        if report.repair:
            measured, error = self._measure(found.measurable, deadline)
            done = measured == len(found.measurable)
            if not done:
                action = f"measured {measured} of {len(found.measurable)}: {error}"
        ids = [c.id for c in found.measurable]
        what = f"{len(ids)} commit(s) have no size recorded: {_examples(ids)}"
        self._add(report, Problem("unmeasured-commit", repo, what, action, done))

    def _measure(self, commits: list[CommitRecord], deadline: float) -> tuple[int, str]:
        """Measure ``commits`` (each recorded as it is measured) until ``deadline``: how
        many were, and why the others were not ("" when all were)."""
        measured, error = 0, ""
        for commit in commits:
            left = deadline - time.monotonic()
            if left <= 0:
                return measured, error or "out of time, the next pfs fsck --repair goes on"
            try:
                if self.sizes.measure(commit, timeout=left) is None:
                    error = error or (
                        f"{commit.id} or its parent went meanwhile (deleted, pruned or "
                        "measured by another)"
                    )
                    continue
            except (PfsError, OSError) as exc:
                log.warning("repo=%s commit=%s not measured: %s", commit.repo, commit.id, exc)
                error = error or f"{commit.id}: {exc}"
                continue
            measured += 1
        return measured, error

    def _still_writable(self, path: Path) -> bool:
        """True when ``path`` is a writable subvolume now (a receive cut off), looked at
        again under the commit's receive lock."""
        return self.pool.is_subvolume(path) and not self.pool.info(path).readonly

    def _fetched_since(self, record: CommitRecord) -> bool:
        """True when a fetch may have begun or ended since the records were read: its
        marker is there, or a whole copy is on disk now (or the commit's record is gone
        or pruned): a missing snapshot is unlisted only when it is still missing."""
        if self.snapshots.markers.receiving(record.repo, record.id):
            return True
        now = self.store.get_commit(record.repo, record.id)
        return (
            now is None
            or now.pruned
            or not self.snapshots.holds(now)
            or self.snapshots.snapshot_on_disk(record.repo, record.id)
        )

    def _unaccepted(self, record: CommitRecord, mounted: set[str], report: FsckReport) -> None:
        if not record.holders:
            what = f"copy of commit {record.id} is not recorded and no node holds it"
            self._add(report, Problem("unaccepted-copy", record.repo, what, "kept"))
            return
        # A fetch runs under the commit's receive lock, not the repo's: one that ended
        # since the records were read accepted this copy (its holder is recorded before
        # its marker goes), so the marker is looked at first, then the record as it is
        # now; and none may begin (and find this copy, or lay its own) before this ends.
        with self.snapshots.receives.try_hold(record.repo, record.id) as free:
            busy = not free or self.snapshots.markers.receiving(record.repo, record.id)
            if not busy:
                now = self.store.get_commit(record.repo, record.id)
                if now is None or self.snapshots.holds(now):
                    return
                record = now
            done = report.repair and record.id not in mounted and not busy
            if done:
                self.snapshots.delete(record.repo, record.id)
        what = f"copy of commit {record.id} was never accepted (held by {record.holders})"
        action = "deleted" if not busy else "kept: a fetch of it is under way"
        self._add(report, Problem("unaccepted-copy", record.repo, what, action, done))

    def _pruned(self, record: CommitRecord, mounted: set[str], report: FsckReport) -> None:
        done = report.repair and record.id not in mounted
        if done:
            self.collector.delete_pruned(record.repo, [record.id])
            done = (record.repo, record.id) not in self.collector.pending_deletions()
        what = f"commit {record.id} was pruned, but its snapshot is still here"
        self._add(report, Problem("pruned-snapshot", record.repo, what, "deleted", done))

    def _check_working_copies(self, repo: str, report: FsckReport) -> None:
        branches = {b.name: b for b in self.store.list_branches(repo)}
        for path in sorted(children(self.layout.repo_dir(repo) / "branches")):
            record = branches.get(path.name)
            if record is None:
                if self.pool.is_subvolume(path):
                    what = f"working copy {path} has no branch record"
                    self._add(report, Problem("working-copy-without-branch", repo, what, "kept"))
                continue
            if not (self.working_copies.is_stale(record) and self.pool.is_subvolume(path)):
                continue
            action, done = "set aside", False
            if report.repair:
                try:
                    keep = self.working_copies.set_aside(repo, path.name, "pfs fsck: stale")
                    action, done = (f"moved to {keep}" if keep else "deleted (clean)"), True
                except InUse:
                    action = "in use: kept"
                except PfsError as exc:
                    action = f"not set aside: {exc}"
            what = (
                f"working copy of branch {path.name} was made from commit "
                f"{record.working_base}, the head is {record.head}"
            )
            self._add(report, Problem("stale-working-copy", repo, what, action, done))
