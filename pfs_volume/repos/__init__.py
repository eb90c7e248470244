"""The commit graph: repos, branches, commits, refs, and their place in the pool.

In parts with one job each (DESIGN.md, "Layers"): ``layout`` (paths), ``locks``,
``snapshots``, ``refs``, ``working_copies``, ``commits`` (the commit protocol and its
crash recovery), ``catalog`` (repos and branches), ``gc``, ``markers`` (work a crash can
cut off), ``recovery`` (start-up), ``fsck`` (the full check, on request), the
``coordinator`` seam to the cluster, ``parts`` (built once) and the ``service`` front.
"""

from pfs_volume.repos.catalog import MAX_DESCRIPTION, RepoSummary, Reset
from pfs_volume.repos.commits import new_commit_id
from pfs_volume.repos.coordinator import Coordinator, Maintenance, Placement, SingleHost
from pfs_volume.repos.fsck import FsckReport, Problem
from pfs_volume.repos.gc import MAX_KEEP_LAST, GcReport
from pfs_volume.repos.layout import IMPORT_MARKER, PoolLayout
from pfs_volume.repos.locks import LOCK_TIMEOUT, KeyedLocks
from pfs_volume.repos.parts import RepoParts
from pfs_volume.repos.recovery import RecoveryReport
from pfs_volume.repos.refs import CommitDetails, Diff
from pfs_volume.repos.service import RepoService
from pfs_volume.repos.sizes import SizeMeter

__all__ = [
    "IMPORT_MARKER",
    "LOCK_TIMEOUT",
    "MAX_DESCRIPTION",
    "MAX_KEEP_LAST",
    "CommitDetails",
    "Coordinator",
    "Diff",
    "FsckReport",
    "GcReport",
    "KeyedLocks",
    "Maintenance",
    "Placement",
    "PoolLayout",
    "Problem",
    "RecoveryReport",
    "RepoParts",
    "RepoService",
    "RepoSummary",
    "Reset",
    "SingleHost",
    "SizeMeter",
    "new_commit_id",
]
