"""Put's staging area on a real btrfs pool, in process: a full pool while staging, a
folder swapped for a link while the bytes come in, names that are not UTF-8 (also in a
crash marker), and a folder whose files refuse to share extents (``chattr +C``)."""

from __future__ import annotations

import errno
import io
import logging
import os
import subprocess
from pathlib import Path

import pytest

from pfs_volume.errors import Conflict, StorageError
from pfs_volume.files import FileService
from pfs_volume.putlog import FOLDER, PutMarker, recover_puts
from pfs_volume.upload import STAGING_FOLDER, Placement
from pfs_volume.volumes import VolumeService

MIB = 1024 * 1024


@pytest.fixture
def files(volumes: VolumeService) -> FileService:
    """Repo r whose master holds docs/a.txt = alpha (committed through a mount)."""
    path = volumes.mount("pfs/r", "m1")
    (path / "docs").mkdir()
    (path / "docs" / "a.txt").write_text("alpha")
    volumes.unmount("pfs/r", "m1")
    return FileService(volumes.repos)


def working_copy(files: FileService) -> Path:
    return files.repos.branch_path("r", "master")


def everything(root: Path) -> list[tuple[bytes, list[bytes], list[bytes]]]:
    return sorted(os.walk(os.fsencode(root)))


def assert_clean(files: FileService) -> None:
    branch = files.repos.get_branch("r", "master")
    assert not files.repos.pool.changed_since(working_copy(files), branch.clean_generation)
    assert os.listdir(files.repos.pool.root / STAGING_FOLDER) == []
    assert markers(files) == []


def markers(files: FileService) -> list[str]:
    folder = files.repos.pool.root / FOLDER
    return os.listdir(folder) if folder.exists() else []


def test_the_staging_area_is_root_only(files: FileService) -> None:
    files.put("r", "master", "staged.txt", io.BytesIO(b"through the staging area"))
    info = os.lstat(files.repos.pool.root / STAGING_FOLDER)
    assert info.st_mode & 0o7777 == 0o700


def test_a_full_pool_while_staging_removes_the_staged_file_and_says_so(
    files: FileService,
) -> None:
    tree = everything(working_copy(files))
    filler = files.repos.pool.root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for piece in range(1024):
            try:
                os.posix_fallocate(fd, piece * 16 * MIB, 16 * MIB)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    try:
        with pytest.raises(StorageError, match=r"the pool is full: the upload of /docs/big\.bin"):
            files.put("r", "master", "docs/big.bin", io.BytesIO(os.urandom(32 * MIB)))
        assert everything(working_copy(files)) == tree
        assert_clean(files)
    finally:
        filler.unlink()
    made = files.put("r", "master", "docs/big.bin", io.BytesIO(b"fits now"))
    assert made.changed
    assert (working_copy(files) / "docs" / "big.bin").read_bytes() == b"fits now"


class SwapsTheFolder:
    """An upload during which a container swaps ``docs`` for a link to ``outside``."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.root, self.outside = root, outside
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads == 2:
            os.rename(self.root / "docs", self.root / "docs.moved")
            os.symlink(self.outside, self.root / "docs")
        return os.urandom(MIB) if self.reads <= 3 else b""


@pytest.mark.parametrize("target", ["docs/a.txt", "docs/new.bin", "docs/deeper/new.bin"])
def test_a_folder_swapped_for_a_link_while_uploading_is_refused(
    files: FileService, tmp_path: Path, target: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    stream = SwapsTheFolder(working_copy(files), outside)
    with pytest.raises(Conflict, match="/docs is a symlink, not a folder"):
        files.put("r", "master", target, stream)  # type: ignore[arg-type]
    assert os.listdir(outside) == []
    moved = working_copy(files) / "docs.moved"
    assert os.listdir(moved) == ["a.txt"] and (moved / "a.txt").read_text() == "alpha"
    assert os.listdir(files.repos.pool.root / STAGING_FOLDER) == []
    assert markers(files) == []


def test_names_that_are_not_utf8_are_staged_placed_and_recovered(files: FileService) -> None:
    path = os.fsdecode(b"d\xff/caf\xe9.bin")
    assert files.put("r", "master", path, io.BytesIO(b"one")).changed
    assert files.put("r", "master", path, io.BytesIO(b"two")).changed
    root = os.fsencode(working_copy(files))
    assert (Path(os.fsdecode(root)) / path).read_bytes() == b"two"
    assert sorted(os.listdir(root)) == [b"docs", b"d\xff"]
    assert os.listdir(root + b"/d\xff") == [b"caf\xe9.bin"]
    assert_clean(files)

    # A crash after the put made its folders, before the link: start-up removes them.
    made = (os.fsdecode(b"n\xfe"), os.fsdecode(b"m\xfd"))
    placement = Placement(("docs",), made, os.fsdecode(b"f\xfc"), None, None)
    PutMarker.write(files.repos, "r", "master", placement)
    os.makedirs(root + b"/docs/n\xfe/m\xfd")
    assert recover_puts(files.repos) == ["r/master"]
    assert os.listdir(root + b"/docs") == [b"a.txt"]
    assert_clean(files)


def test_a_folder_that_refuses_to_share_extents_gets_a_copy(
    volumes: VolumeService, files: FileService, caplog: pytest.LogCaptureFixture
) -> None:
    path = volumes.mount("pfs/r", "m2")
    (path / "nocow").mkdir()
    subprocess.run(["chattr", "+C", str(path / "nocow")], check=True)
    volumes.unmount("pfs/r", "m2")
    data = os.urandom(3 * MIB + 5)
    with caplog.at_level(logging.INFO, logger="pfs_volume.upload"):
        assert files.put("r", "master", "nocow/f.bin", io.BytesIO(data)).changed
    assert (working_copy(files) / "nocow" / "f.bin").read_bytes() == data
    assert "copied into place, not cloned" in caplog.text
    assert_clean(files)
