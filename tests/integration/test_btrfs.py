"""The btrfs layer against a real loop-mounted pool."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool, filesystem_type, prepare_pool
from pfs_volume.btrfs.pool_image import is_mountpoint
from pfs_volume.errors import BtrfsCommandError, InvalidRequest, StorageError


def test_pool_image_is_sparse_btrfs_mounted_noatime(pool: BtrfsPool) -> None:
    image = pool.root.parent / "pool.img"
    assert image.stat().st_size == 512 * 1024**2
    assert image.stat().st_blocks * 512 < image.stat().st_size // 4
    assert filesystem_type(pool.root) == "btrfs"
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        line = next(x for x in handle if x.split()[4] == str(pool.root))
    assert "noatime" in line.split()[5]


def test_prepare_pool_reuses_a_mounted_pool(pool: BtrfsPool) -> None:
    (pool.root / "marker").write_text("x")
    root, image = prepare_pool(pool.root.parent, 512 * 1024**2)
    assert root == pool.root and image is not None
    assert (root / "marker").read_text() == "x"


def test_prepare_pool_remounts_an_existing_image(tmp_path: Path) -> None:
    root, image = prepare_pool(tmp_path, 300 * 1024**2)
    assert image is not None
    (root / "kept").write_text("data")
    image.unmount()
    assert not is_mountpoint(root)
    root, image = prepare_pool(tmp_path, 300 * 1024**2)
    assert image is not None
    try:
        assert (root / "kept").read_text() == "data"
    finally:
        image.unmount()


def test_too_small_pool_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="at least"):
        prepare_pool(tmp_path, 10 * 1024**2)
    assert not (tmp_path / "pool.img").exists()


def test_readonly_snapshot_keeps_content_and_refuses_writes(pool: BtrfsPool) -> None:
    work = pool.root / "work"
    pool.create_subvolume(work)
    (work / "a").write_text("one")
    pool.snapshot(work, pool.root / "snap", readonly=True)
    (work / "a").write_text("two")
    assert (pool.root / "snap" / "a").read_text() == "one"
    info = pool.info(pool.root / "snap")
    assert info.readonly and info.parent_uuid == pool.info(work).uuid
    assert info.received_uuid is None
    with pytest.raises(OSError) as caught:
        (pool.root / "snap" / "b").write_text("x")
    assert caught.value.errno == 30  # EROFS
    assert pool.is_subvolume(work) and not pool.is_subvolume(work / "a")


def test_generation_moves_with_changes_and_not_with_reads(pool: BtrfsPool) -> None:
    work = pool.root / "work"
    pool.create_subvolume(work)
    (work / "a").write_text("one")
    clean = pool.generation(work)
    (work / "a").read_text()
    os.listdir(work)
    assert pool.generation(work) == clean
    (work / "a").unlink()
    deleted = pool.generation(work)
    assert deleted != clean
    pool.snapshot(work, pool.root / "s", readonly=True)
    after = pool.info(work).generation
    assert pool.generation(work) == after


def test_failed_commands_carry_stderr(pool: BtrfsPool) -> None:
    with pytest.raises(BtrfsCommandError) as caught:
        pool.delete_subvolume(pool.root / "nope")
    assert "btrfs subvolume delete" in str(caught.value)
    assert caught.value.stderr


def test_ioctls_agree_with_the_btrfs_command(pool: BtrfsPool) -> None:
    work = pool.root / "work"
    pool.create_subvolume(work)
    (work / "a").write_text("x")
    pool.snapshot(work, pool.root / "snap", readonly=True)
    for path in (work, pool.root / "snap"):
        shown = subprocess.run(
            ["btrfs", "subvolume", "show", str(path)], check=True, capture_output=True, text=True
        ).stdout
        fields = dict(
            (k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in shown.splitlines())
        )
        info = pool.info(path)
        assert info.generation == int(fields["Generation"])
        assert info.uuid == fields["UUID"]
        assert (info.parent_uuid or "-") == fields["Parent UUID"]
        assert (info.received_uuid or "-") == fields["Received UUID"]
        assert info.readonly == ("readonly" in fields["Flags"])


def test_info_of_a_plain_folder_is_refused(pool: BtrfsPool) -> None:
    (pool.root / "plain").mkdir()
    with pytest.raises(StorageError, match="not a btrfs subvolume"):
        pool.info(pool.root / "plain")
    with pytest.raises(StorageError, match="cannot open"):
        pool.snapshot(pool.root / "absent", pool.root / "x", readonly=True)


def test_delete_subvolume(pool: BtrfsPool) -> None:
    pool.create_subvolume(pool.root / "gone")
    pool.snapshot(pool.root / "gone", pool.root / "gone-ro", readonly=True)
    pool.delete_subvolume(pool.root / "gone-ro")
    pool.delete_subvolume(pool.root / "gone")
    assert not (pool.root / "gone").exists() and not (pool.root / "gone-ro").exists()


def test_changed_since_sees_committed_and_uncommitted_changes(pool: BtrfsPool) -> None:
    work = pool.root / "work"
    pool.create_subvolume(work)
    clean = pool.generation(work)
    assert not pool.changed_since(work, clean)
    (work / "a").write_text("not yet committed by btrfs")
    assert pool.changed_since(work, clean)
    clean = pool.generation(work)
    (work / "a").unlink()
    pool.sync(work)
    assert pool.changed_since(work, clean)
    assert pool.changed_since(work, None)
