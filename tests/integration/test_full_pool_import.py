"""An import into a full pool: a clear "pool is full" (507) naming the import, nothing
half-imported left behind, the reserve untouched, and the same import works once there
is room (the reserve logic reached through RepoService's front methods); a gc that
took the reserve on a full pool and was killed is finished at start-up, which makes the
reserve again."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import requests

from tests.integration.test_full_pool import (
    CHUNK,
    fill,
    gc,
    mount,
    other_repo_with_40mib,
    put,
    small,
    unmount,
)
from tests.pfs_node import PfsNode

__all__ = ["small"]


def test_an_import_into_a_full_pool_is_refused_whole_and_works_once_there_is_room(
    small: PfsNode, tmp_path: Path
) -> None:
    small.cli("repo", "create", "src")
    assert put(small, "src", "blob", os.urandom(24 * CHUNK)).status_code == 200
    assert put(small, "src", "small", b"small").status_code == 200
    dump = tmp_path / "src.pfs"
    small.cli("repo", "export", "src", "-o", str(dump))
    reserve = small.pool_root / "reserve"
    size = reserve.stat().st_size

    path = mount(small, "filler", "m1")
    fill(path)
    refused = small.cli("repo", "import", str(dump), "--as", "copy", check=False)
    assert refused.returncode != 0
    assert "the pool is full" in refused.stderr and "export file does not fit" in refused.stderr
    assert "copy" not in [r["name"] for r in small.cli_json("repo", "list")]
    assert not (small.pool_root / "repos" / "copy").exists()
    assert not list((small.pool_root / "incoming").iterdir())
    assert reserve.stat().st_size == size  # an import never takes the reserve

    (path / "big").unlink()
    assert unmount(small, "filler", "m1") == ""
    small.cli("repo", "import", str(dump), "--as", "copy")
    assert [c["id"] for c in small.cli_json("log", "copy")] == [
        c["id"] for c in small.cli_json("log", "src")
    ]
    head = small.cli_json("log", "copy")[0]["id"]
    copied = small.pool_root / "repos" / "copy" / "commits" / head
    assert (copied / "small").read_bytes() == b"small"


def test_a_gc_on_a_full_pool_killed_after_marking_frees_the_space_at_start_up(
    small: PfsNode,
) -> None:
    small.cli("repo", "create", "other")
    other_repo_with_40mib(small)
    log = small.cli_json("log", "other")
    path = mount(small, "photos", "m1")
    fill(path)
    small.stop()

    small.start(env={"PFS_FAILPOINTS": "gc.after_mark"})
    with contextlib.suppress(requests.RequestException):
        gc(small, "other", 1)
    assert small.wait_exit() == 137  # reached, with the reserve given up for the gc

    small.start()
    old = small.pool_root / "repos" / "other" / "commits" / log[1]["id"]
    assert not old.exists()
    assert [c["id"] for c in small.cli_json("log", "other")] == [c["id"] for c in log]
    wait = time.monotonic() + 30
    while not (small.pool_root / "reserve").exists() and time.monotonic() < wait:
        time.sleep(0.5)
    assert (small.pool_root / "reserve").exists(), "the reserve comes back"
    assert put(small, "other", "new", os.urandom(2 * CHUNK)).status_code == 200
    assert (path / "big").exists(), "the filled working copy is untouched"
