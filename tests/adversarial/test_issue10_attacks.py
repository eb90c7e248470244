"""Attacks on issue 10's claims ("a root daemon that no input can turn against its
host") that the earlier suites missed: each test is one finding, fixed in the product."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool, ioctl, streams
from pfs_volume.btrfs.stream_check import StreamChecker
from pfs_volume.errors import StreamRefused
from tests.hostile_streams import FIRST, SECOND, first_commit
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


def test_a_clone_from_the_bases_own_uuid_never_opens_another_subvolume(
    pool: BtrfsPool, tmp_path: Path
) -> None:
    """btrfs receive finds a snapshot's parent by received UUID, else by UUID, but a clone
    source by received UUID alone. A stream that names its base by the base's own UUID
    (a peer learns it from any stream of a commit made on this node) is built on the
    base; if, before its clone command, another receive made a subvolume whose received
    UUID is that UUID (with a link where the base has a folder), btrfs clones from that
    one, through its link, while the checker checked the base's file."""
    folder = pool.root / "repos" / "r" / "commits"
    folder.mkdir(parents=True)
    streams.receive([first_commit()], folder, FIRST)
    own = uuid.UUID(ioctl.subvolume_info(folder / FIRST).uuid)
    secret = pool.root / "repos" / "victim"
    secret.mkdir(parents=True)
    (secret / "f").write_bytes(b"secret!")
    forger = pool.root / "repos" / "forger" / "commits"
    forger.mkdir(parents=True)
    start = Stream().snapshot(SECOND, uuid.uuid4(), own, 7)
    first = start.bytes(end=False)
    rest = start.mkfile("g").clone("g", own, 7, "d/f", 7).bytes()[len(first) :]

    def chunks() -> Iterator[bytes]:
        yield first  # btrfs builds on the base (no subvolume has received `own` yet)
        forged = Stream().subvol("f" * 32, own).symlink("d", "../../../victim").bytes()
        streams.receive([forged], forger, "f" * 32)  # a concurrent receive
        yield rest

    with pytest.raises(StreamRefused, match="a clone from a subvolume that is neither"):
        streams.receive(chunks(), folder, SECOND, folder / FIRST)
    assert sorted(os.listdir(folder)) == [FIRST]
