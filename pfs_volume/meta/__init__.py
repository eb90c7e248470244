"""Metadata: one interface (``MetadataStore``), backends behind it."""

from pfs_volume.meta.etcd import EtcdStore
from pfs_volume.meta.etcd_client import EtcdClient
from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    Fence,
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
    "EtcdClient",
    "EtcdStore",
    "Fence",
    "MetadataStore",
    "MountRecord",
    "RepoRecord",
    "SqliteStore",
    "VolumeRecord",
    "rfc3339",
    "utcnow",
]
