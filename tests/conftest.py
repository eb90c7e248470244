"""Shared fixtures: a real btrfs pool (a loop-mounted image made by the product's own
code), a SQLite store on it, and the services over them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.meta import SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService

POOL_SIZE = 512 * 1024**2


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[BtrfsPool]:
    """A fresh btrfs pool in a sparse image under tmp_path, unmounted afterwards."""
    root, image = prepare_pool(tmp_path / "state", POOL_SIZE)
    assert image is not None, "tmp_path is on btrfs: these tests want a fresh image"
    try:
        yield BtrfsPool(root)
    finally:
        image.unmount()


@pytest.fixture
def store(pool: BtrfsPool) -> Iterator[SqliteStore]:
    db = SqliteStore(pool.root / "meta.db")
    yield db
    db.close()


@pytest.fixture
def repos(store: SqliteStore, pool: BtrfsPool) -> RepoService:
    return RepoService(store, pool)


@pytest.fixture
def volumes(repos: RepoService, store: SqliteStore) -> VolumeService:
    return VolumeService(repos, store, prefix="pfs")
