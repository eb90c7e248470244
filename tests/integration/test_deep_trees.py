"""The pool deletes a tree a container wrote 2,000 folders deep, with a subvolume the
container made inside it, at any depth (no recursion per level): as a folder
(``delete_tree``, what pipeline outputs and deleted repos go through) and as a
subvolume whose plain delete is refused for the subvolume nested in it."""

from __future__ import annotations

import time
from pathlib import Path

from pfs_volume.btrfs import BtrfsPool
from tests.protocol.test_deep_folders import build_chain

DEPTH = 2000


def deep_with_nested(pool: BtrfsPool, top: Path) -> None:
    build_chain(top, DEPTH)
    (top / "a" / "b").mkdir(parents=True)
    pool.create_subvolume(top / "a" / "b" / "nested")
    build_chain(top / "a" / "b" / "nested", 50)


def test_delete_tree_of_a_deep_folder_with_a_subvolume(pool: BtrfsPool) -> None:
    top = pool.root / "made"
    top.mkdir()
    deep_with_nested(pool, top)
    started = time.monotonic()
    pool.delete_tree(top)
    assert not top.exists()
    assert time.monotonic() - started < 20


def test_delete_subvolume_holding_a_deep_folder_and_a_subvolume(pool: BtrfsPool) -> None:
    top = pool.root / "work"
    pool.create_subvolume(top)
    deep_with_nested(pool, top)
    started = time.monotonic()
    pool.delete_subvolume(top)
    assert not top.exists()
    assert time.monotonic() - started < 20
