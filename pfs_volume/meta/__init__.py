"""Metadata: one interface (``MetadataStore``), backends behind it."""

from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    MountRecord,
    RepoRecord,
    VolumeRecord,
    rfc3339,
    utcnow,
)
from pfs_volume.meta.sqlite import SqliteStore
from pfs_volume.meta.store import MetadataStore

__all__ = [
    "BranchRecord",
    "CommitIntent",
    "CommitRecord",
    "MetadataStore",
    "MountRecord",
    "RepoRecord",
    "SqliteStore",
    "VolumeRecord",
    "rfc3339",
    "utcnow",
]
