"""Attacks on issue 10's claims ("a root daemon that no input can turn against its
host") that the earlier suites missed: each test is one finding, fixed in the product."""

from __future__ import annotations

import uuid

from pfs_volume.btrfs.stream_check import StreamChecker
from tests.sendstream import RMDIR, UNLINK, Stream


def _model_size(checker: StreamChecker) -> int:
    """Entries the checker's model of the subvolume holds, in every folder."""
    count, folders = 0, [checker._root]
    while folders:
        folder = folders.pop()
        count += len(folder.entries)
        folders += [n for n in folder.entries.values() if n is not None and n.entries]
    return count


def test_a_stream_that_makes_and_removes_names_holds_no_memory_for_them() -> None:
    """A stream that makes a file and removes it, under a new name each time, leaves an
    empty tree, yet the checker kept one entry per name ever made: about twice the
    stream's size in the root daemon's memory (a 64 GiB import body: an OOM kill)."""
    names = [f"n{i}" for i in range(5000)]
    stream = Stream().subvol("b" * 32, uuid.uuid4()).mkdir("d")
    for name in names:
        stream.mkfile(f"d/{name}").path_only(UNLINK, f"d/{name}")
        stream.mkdir(name).path_only(RMDIR, name)
        stream.mkfile(name).rename(name, f"d/{name}").path_only(UNLINK, f"d/{name}")
    checker = StreamChecker("b" * 32, None, lambda: None)
    assert b"".join(checker.check([stream.bytes()])) == stream.bytes()
    assert _model_size(checker) <= 2  # 'd' (and nothing in it)
