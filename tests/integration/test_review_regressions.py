"""Failure paths and races: a failed commit, dirty working copies, leftover data of a
deleted repo, nested subvolumes, mismatched unmounts, concurrent mounts. Real btrfs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import Busy, Conflict, InvalidName, InvalidRequest, StorageError
from pfs_volume.meta import SqliteStore
from pfs_volume.names import parse_ref
from pfs_volume.repos import KeyedLocks, RepoService
from pfs_volume.volumes import VolumeService

FIXED_ID = "c0ffee" + "0" * 26


@pytest.fixture
def fixed(store: SqliteStore, pool: BtrfsPool) -> VolumeService:
    """Services whose next commit id is known, so a test can get in its way."""
    ids = iter([FIXED_ID, *(f"{n:032x}" for n in range(1, 100))])
    return VolumeService(RepoService(store, pool, new_id=lambda: next(ids)), store, "pfs")


def test_a_failed_commit_releases_the_mount_and_the_next_commit_takes_the_changes(
    fixed: VolumeService,
) -> None:
    repos = fixed.repos
    path = fixed.mount("pfs/r", "m1")
    (path / "a").write_text("precious")
    blocker = repos.commit_path("r", FIXED_ID)
    blocker.write_text("in the way of the snapshot")
    with pytest.raises(StorageError):
        fixed.unmount("pfs/r", "m1")
    assert fixed.mounts() == [], "Docker never repeats an Unmount: the mount must go"
    assert repos.store.list_intents() == []
    assert repos.log("r", parse_ref("master")) == []
    with pytest.raises(Conflict, match="changes no commit holds"):
        repos.delete_repo("r")
    blocker.unlink()
    fixed.mount("pfs/r", "m2")
    fixed.unmount("pfs/r", "m2")
    [commit] = repos.log("r", parse_ref("master"))
    assert (repos.commit_path("r", commit.id) / "a").read_text() == "precious"
    repos.delete_repo("r")


def test_a_repo_made_again_never_shows_a_deleted_repos_leftovers(
    volumes: VolumeService, store: SqliteStore
) -> None:
    path = volumes.mount("pfs/q", "m1")
    (path / "secret").write_text("old")
    volumes.unmount("pfs/q", "m1")
    store.delete_repo("q")  # records gone, data not yet: as after a failed purge
    path = volumes.mount("pfs/q", "m2")
    assert list(path.iterdir()) == []
    volumes.unmount("pfs/q", "m2")
    assert store.list_deleted_repos() == []
    assert store.count_commits("q") == 0


def test_delete_removes_subvolumes_a_container_nested_in_a_working_copy(
    volumes: VolumeService, pool: BtrfsPool
) -> None:
    path = volumes.mount("pfs/r", "m1")
    pool.create_subvolume(path / "inner")
    (path / "inner" / "f").write_text("x")
    pool.create_subvolume(path / "inner" / "deeper")
    volumes.unmount("pfs/r", "m1")
    volumes.repos.delete_repo("r")
    assert not volumes.repos.repo_dir("r").exists()


def test_unmount_with_another_volumes_name_changes_nothing(volumes: VolumeService) -> None:
    path = volumes.mount("pfs/photos", "m1")
    (path / "a").write_text("x")
    with pytest.raises(InvalidRequest, match="belongs to volume pfs/photos"):
        volumes.unmount("pfs/other", "m1")
    assert [m.id for m in volumes.mounts()] == ["m1"]
    assert volumes.store.count_commits("photos") == 0


def test_release_acts_as_dockers_unmount(volumes: VolumeService) -> None:
    path = volumes.mount("pfs/photos", "lost")
    (path / "a").write_text("x")
    volumes.release("lost")
    assert volumes.mounts() == []
    assert volumes.store.count_commits("photos") == 1


def test_huge_ancestry_numbers_are_refused_cleanly() -> None:
    with pytest.raises(InvalidName, match="1 to 9 digits"):
        parse_ref("master~" + "9" * 5000)


def test_a_held_lock_answers_busy_in_time() -> None:
    locks = KeyedLocks()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locks.hold("r"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(Busy, match="r is busy"), locks.hold("r", timeout=0.1):
            pass
        with locks.hold("other", timeout=0.1):
            pass
    finally:
        release.set()
        thread.join(10)


def test_concurrent_mounts_and_unmounts_of_one_branch_lose_nothing(
    volumes: VolumeService,
) -> None:
    errors: list[BaseException] = []

    def container(n: int) -> None:
        try:
            for round_ in range(3):
                mount_id = f"c{n}r{round_}"
                path = volumes.mount("pfs/shared", mount_id)
                (path / f"{n}-{round_}").write_text(str(n))
                volumes.unmount("pfs/shared", mount_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=container, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert volumes.mounts() == []
    head = volumes.repos.get_branch("shared", "master").head
    assert head is not None
    files = sorted(p.name for p in volumes.repos.commit_path("shared", head).iterdir())
    assert files == sorted(f"{n}-{r}" for n in range(6) for r in range(3))
    assert 1 <= volumes.store.count_commits("shared") <= 18


def test_a_half_made_pool_image_is_made_again(tmp_path: Path) -> None:
    from pfs_volume.btrfs import prepare_pool

    (tmp_path / "pool.partial").write_bytes(b"a crash left this")
    _root, image = prepare_pool(tmp_path, 300 * 1024**2)
    assert image is not None
    try:
        assert (tmp_path / "pool.img").exists() and not (tmp_path / "pool.partial").exists()
    finally:
        image.unmount()
