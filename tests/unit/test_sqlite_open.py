"""A metadata store that cannot be opened keeps no file open: a failed start-up keeps
its error to the end, and a file open in the pool made its unmount fail ("target is
busy"), leaving the pool mounted on its loop device after the daemon exited."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pfs_volume.errors import StorageError
from pfs_volume.meta import SqliteStore


def open_files_under(folder: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def test_a_store_that_cannot_be_opened_keeps_no_file_open(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StorageError, match="file is not a database") as failed:
        SqliteStore(path, "n1")
    # The error is still held here, as the daemon holds the one that ended its start.
    assert failed.value is not None
    assert open_files_under(tmp_path) == []
