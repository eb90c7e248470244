"""``streams.receive`` straight into a folder of commits, as replication receives (the
earlier commit a real sibling, another repo's received commit beside): every hostile
stream is refused and reaches nothing outside the commit it would make."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool, streams
from pfs_volume.errors import StreamRefused
from tests.adversarial.test_hostile_streams import tree
from tests.hostile_streams import (
    FIRST,
    FIRST_UUID,
    HOSTILE,
    INCREMENTAL,
    SECOND,
    Target,
    first_commit,
    full,
    on_first,
)
from tests.sendstream import Stream

BYSTANDER_UUID = uuid.UUID("99999999-8888-7777-6666-555555555555")


@pytest.fixture
def commits(pool: BtrfsPool) -> Path:
    """``repos/r/commits`` with commit FIRST received, and another repo's received commit."""
    folder = pool.root / "repos" / "r" / "commits"
    folder.mkdir(parents=True)
    streams.receive([first_commit()], folder, FIRST)
    other = pool.root / "repos" / "other" / "commits"
    other.mkdir(parents=True)
    bystander = Stream().subvol("c" * 32, BYSTANDER_UUID).mkfile("f")
    streams.receive([bystander.write("f", b"bystander").bytes()], other, "c" * 32)
    return folder


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_hostile_stream_into_a_folder_of_commits_is_refused(
    pool: BtrfsPool, commits: Path, attack: str, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "canary").write_text("canary")
    before = tree(pool.root), tree(host), sorted(os.listdir("/etc"))
    stream = HOSTILE[attack](Target(host, BYSTANDER_UUID))
    base = commits / FIRST if attack in INCREMENTAL else None
    with pytest.raises(StreamRefused, match=f"the send stream of commit {SECOND} was refused"):
        streams.receive([stream], commits, SECOND, base)
    assert (tree(pool.root), tree(host), sorted(os.listdir("/etc"))) == before


def test_a_clone_source_outside_the_pool_is_never_opened(
    pool: BtrfsPool, commits: Path, tmp_path: Path
) -> None:
    """btrfs receive opens clone sources through the pool's mount, outside its chroot: a
    path with '..' from another repo's commit would open a host FIFO (and hang there)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    opened = threading.Event()

    def watch() -> None:
        with open(fifo, "wb"):  # returns once a reader opened the FIFO
            opened.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    escape = "../" * 16 + str(fifo).lstrip("/")
    stream = full().mkfile("f").clone("f", BYSTANDER_UUID, 7, escape, 4096).bytes()
    try:
        with pytest.raises(StreamRefused, match="was refused: clone of"):
            streams.receive([stream], commits, SECOND)
        assert not opened.wait(0.5)
    finally:
        if not opened.is_set():
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # let the watcher end
        watcher.join(5)


def test_a_legitimate_incremental_stream_with_a_clone_from_its_base(
    pool: BtrfsPool, commits: Path
) -> None:
    """What the checker lets through still receives: a clone from the base's file."""

    stream = on_first().mkfile("o").clone("o", FIRST_UUID, 7, "d/f", 5).rename("o", "g").bytes()
    made = streams.receive([stream], commits, SECOND, commits / FIRST)
    assert (made / "g").read_bytes() == b"first"
    assert (made / "d" / "f").read_bytes() == b"first"


def forge(pool: BtrfsPool, repo: str, name: str, host: Path) -> None:
    """A subvolume that claims FIRST's UUID, received before FIRST itself (so btrfs finds
    it first), with a link to the host where FIRST has its folder ``d``."""
    folder = pool.root / "repos" / repo / "commits"
    folder.mkdir(parents=True)
    streams.receive(
        [Stream().subvol(name, FIRST_UUID).symlink("d", str(host)).bytes()], folder, name
    )


@pytest.mark.parametrize("twin", [True, False], ids=["at a twin's path", "anywhere else"])
def test_a_subvolume_forging_the_bases_uuid_never_leads_a_receive_outside(
    pool: BtrfsPool, tmp_path: Path, twin: bool
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    forge(pool, "forger", FIRST if twin else "f" * 32, host)
    folder = pool.root / "repos" / "r" / "commits"
    folder.mkdir(parents=True)
    streams.receive([first_commit()], folder, FIRST)
    twins = [pool.root / "repos" / "forger" / "commits" / FIRST]
    # Harmless on FIRST, whose "d" is a folder; through the forged link it is not.
    stream = on_first().mkfile("d/evil").write("d/evil", b"evil").bytes()
    refusal = "'d/evil': no such folder" if twin else "is no copy of that commit"
    with pytest.raises(StreamRefused, match=refusal):
        streams.receive([stream], folder, SECOND, folder / FIRST, twins)
    assert os.listdir(host) == []
    assert sorted(os.listdir(folder)) == [FIRST]


def test_an_incremental_stream_builds_on_a_twin_in_another_repo(
    pool: BtrfsPool, commits: Path
) -> None:
    """The same commit in two repos (one export imported twice): btrfs builds on the copy
    it finds first, and the stream is checked against that copy."""
    again = pool.root / "repos" / "copy" / "commits"
    again.mkdir(parents=True)
    streams.receive([first_commit()], again, FIRST)
    stream = on_first().mkfile("n").write("n", b"new").bytes()
    made = streams.receive([stream], again, SECOND, again / FIRST, [commits / FIRST])
    assert (made / "n").read_bytes() == b"new"
    assert (made / "d" / "f").read_bytes() == b"first"
    third = pool.root / "repos" / "third" / "commits"
    third.mkdir(parents=True)
    streams.receive([first_commit()], third, FIRST)
    with pytest.raises(StreamRefused, match="is no copy of that commit"):
        streams.receive([stream], third, SECOND, third / FIRST)  # its twins not named
    assert sorted(os.listdir(third)) == [FIRST]
