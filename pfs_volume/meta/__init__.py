"""Metadata: one interface (``MetadataStore``), backends behind it."""

from pfs_volume.meta.change_log import StoreChanges
from pfs_volume.meta.etcd import EtcdStore
from pfs_volume.meta.etcd_client import EtcdClient
from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitLinks,
    CommitRecord,
    Fence,
    MountRecord,
    RepoRecord,
    RepoSize,
    VolumeRecord,
    rfc3339,
    utcnow,
)
from pfs_volume.meta.sqlite import SqliteStore
from pfs_volume.meta.store import MetadataStore

__all__ = [
    "BranchRecord",
    "CommitIntent",
    "CommitLinks",
    "CommitRecord",
    "EtcdClient",
    "EtcdStore",
    "Fence",
    "MetadataStore",
    "MountRecord",
    "RepoRecord",
    "RepoSize",
    "SqliteStore",
    "StoreChanges",
    "VolumeRecord",
    "rfc3339",
    "utcnow",
]
