"""Diffs of commit snapshots (pfs_volume.btrfs.changes) on a real loop-mounted pool."""

from __future__ import annotations

import os
import random
import shutil
import stat
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.btrfs import changes as changes_module
from pfs_volume.btrfs.changes import changes, dump_lines
from pfs_volume.diff import Change
from pfs_volume.errors import BtrfsCommandError
from pfs_volume.meta import CommitRecord
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.sizes import SizeMeter


def working_copy(pool: BtrfsPool, name: str = "work") -> Path:
    path = pool.root / name
    pool.create_subvolume(path)
    return path


def commit(pool: BtrfsPool, work: Path, name: str) -> Path:
    snapshot = pool.root / name
    pool.snapshot(work, snapshot, readonly=True)
    return snapshot


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def renamed(path: str, old: str, *, modified: bool = False) -> Change:
    return Change(path, "renamed", old, modified)


def test_changes_between_two_commits(pool: BtrfsPool) -> None:
    work = working_copy(pool)
    for name in (
        "keep.txt",
        "mod.txt",
        "del.txt",
        "ren.txt",
        "renmod.txt",
        "with space.txt",
        "hl",
        "chm.sh",
        "touched.txt",
        "saved.txt",
        "old/x",
        "old/sub/y",
        "pics/p.png",
        "docs/a.md",
    ):
        write(work / name, f"{name} v1\n")
    (work / "emptydir").mkdir()
    a = commit(pool, work, "A")

    with open(work / "mod.txt", "a", encoding="utf-8") as handle:
        handle.write("v2\n")
    (work / "del.txt").unlink()
    (work / "ren.txt").rename(work / "renamed.txt")
    (work / "renmod.txt").rename(work / "docs" / "renmod.txt")
    with open(work / "docs" / "renmod.txt", "a", encoding="utf-8") as handle:
        handle.write("v2\n")
    (work / "with space.txt").rename(work / "with  two spaces.txt")
    os.link(work / "hl", work / "hl-link")
    (work / "chm.sh").chmod(0o755)
    os.utime(work / "touched.txt", (1_600_000_000, 1_600_000_000))
    write(work / "saved.txt.tmp", "saved v2\n")
    (work / "saved.txt.tmp").rename(work / "saved.txt")
    shutil.rmtree(work / "old")
    (work / "emptydir").rmdir()
    (work / "pics").rename(work / "images")
    write(work / "nouveau répertoire" / "é\nnewline", "new\n")
    (work / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name\n")
    b = commit(pool, work, "B")

    assert changes(a, b) == [
        Change(os.fsdecode(b"caf\xe9"), "added"),
        Change("chm.sh", "modified"),
        Change("del.txt", "deleted"),
        renamed("docs/renmod.txt", "renmod.txt", modified=True),
        Change("emptydir", "deleted"),
        Change("hl-link", "added"),
        renamed("images", "pics"),
        Change("mod.txt", "modified"),
        Change("nouveau répertoire", "added"),
        Change("nouveau répertoire/é\nnewline", "added"),
        Change("old", "deleted"),
        Change("old/sub", "deleted"),
        Change("old/sub/y", "deleted"),
        Change("old/x", "deleted"),
        renamed("renamed.txt", "ren.txt"),
        Change("saved.txt", "modified"),
        Change("touched.txt", "modified"),
        renamed("with  two spaces.txt", "with space.txt"),
    ]


def test_first_commit_and_no_change(pool: BtrfsPool) -> None:
    work = working_copy(pool)
    write(work / "dir" / "f", "x")
    write(work / "top file", "y")
    os.symlink("dir/f", work / "link")
    first = commit(pool, work, "first")
    assert changes(None, first) == [
        Change("dir", "added"),
        Change("dir/f", "added"),
        Change("link", "added"),
        Change("top file", "added"),
    ]
    again = commit(pool, work, "again")
    assert changes(first, again) == []


def test_one_file_change_in_five_thousand(pool: BtrfsPool) -> None:
    work = working_copy(pool)
    for i in range(5_000):
        write(work / f"d{i // 100:02d}" / f"f{i:04d}", f"file {i}\n")
    a = commit(pool, work, "A")
    write(work / "d17" / "f1717", "changed\n")
    b = commit(pool, work, "B")

    assert changes(a, b) == [Change("d17/f1717", "modified")]
    # The listing itself is a handful of lines: its cost follows the change.
    assert len(list(dump_lines(a, b))) < 10
    # A first commit lists all of it (over 64 KiB of output through the pipe).
    everything = changes(None, a)
    assert len(everything) == 5_050
    assert {c.kind for c in everything} == {"added"}


def test_a_new_hard_link_does_not_modify_the_file(pool: BtrfsPool) -> None:
    work = working_copy(pool)
    write(work / "data", "x")
    write(work / "other", "y")
    a = commit(pool, work, "A")
    os.link(work / "data", work / "data-link")
    (work / "other").chmod(0o600)
    (work / "other").chmod(0o644)  # back as it was: only its ctime moved
    b = commit(pool, work, "B")
    assert changes(a, b) == [Change("data-link", "added")]


def test_writable_snapshots_are_refused_with_the_commands_stderr(pool: BtrfsPool) -> None:
    work = working_copy(pool)
    a = commit(pool, work, "A")
    with pytest.raises(BtrfsCommandError) as caught:
        changes(a, work)
    assert "btrfs -q send --no-data -p" in str(caught.value)
    assert "not read-only" in caught.value.stderr
    with pytest.raises(BtrfsCommandError, match="No such file"):
        changes(pool.root / "absent", a)


def test_a_listing_that_takes_too_long_is_stopped(pool: BtrfsPool) -> None:
    work = working_copy(pool)
    a = commit(pool, work, "A")
    write(work / "later", "x")
    b = commit(pool, work, "B")
    with pytest.raises(BtrfsCommandError, match="timed out after 0 s"):
        changes(a, b, timeout=0)  # (a first commit's listing is a walk, not a send)
    assert "btrfs" not in child_commands()


def test_leaving_the_listing_early_stops_both_commands(pool: BtrfsPool) -> None:
    work = working_copy(pool)
    for i in range(2_000):
        write(work / f"f{i}", "x")
    a = commit(pool, work, "A")
    lines = dump_lines(None, a)
    assert next(lines).startswith("subvol")
    assert "btrfs" in child_commands()
    lines.close()
    assert "btrfs" not in child_commands()


def a_send_that_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """``btrfs send`` stands still (a slow send on a loaded host): ``receive --dump``
    waits for a stream that does not come."""
    monkeypatch.setattr(changes_module, "_send_command", lambda _parent, _child: ["sleep", "600"])


def test_a_cancelled_listing_stops_both_commands_at_once(
    pool: BtrfsPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = working_copy(pool)
    a = commit(pool, work, "A")
    b = commit(pool, work, "B")
    a_send_that_never_ends(monkeypatch)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    began = time.monotonic()
    with pytest.raises(BtrfsCommandError, match="cancelled"):
        list(dump_lines(a, b, cancel=cancel))
    assert time.monotonic() - began < 5.0
    assert not LISTING_COMMANDS & set(child_commands())  # (a worker may run etcd)


def test_closing_the_size_meter_abandons_a_measurement_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon's stop closes the meter: it does not wait for the send (up to its
    600 s timeout), the commit stays unmeasured for ``pfs fsck --repair``."""
    layout = PoolLayout(tmp_path)
    parent = CommitRecord("a" * 32, "r", "master", None, datetime.now(UTC), "m", "test")
    child = replace(parent, id="b" * 32, parent=parent.id)
    for record in (parent, child):
        layout.commit_path("r", record.id).mkdir(parents=True)
    a_send_that_never_ends(monkeypatch)
    meter = SizeMeter(cast(Any, None), layout).start()
    meter.measure_later(child)
    deadline = time.monotonic() + 30
    while "sleep" not in child_commands():
        assert time.monotonic() < deadline, "the measurement never started"
        time.sleep(0.05)
    began = time.monotonic()
    assert meter.close(), "the measurement was still under way"
    assert time.monotonic() - began < 5.0
    assert not LISTING_COMMANDS & set(child_commands())  # (a worker may run etcd)


LISTING_COMMANDS = {"sleep", "btrfs"}
"""What a listing with ``a_send_that_never_ends`` starts: its send and its dump."""


def child_commands() -> list[str]:
    """Names of this process's live child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(name)
    return found


# Random edits, checked against the trees themselves ---------------------------------

NAMES = ["a", "b c", "ü", "new\nline", "x.txt", "tab\tt", "o300-9-0", "back\\slash", "d"]


@dataclass(frozen=True)
class Entry:
    """What a test can see of one entry: its type, content (or link target), mode and,
    for everything but directories, its modification time."""

    kind: int
    content: bytes
    mode: int
    mtime_ns: int


def listing(root: Path) -> dict[str, Entry]:
    """Every entry under ``root`` by relative path."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            if stat.S_ISREG(info.st_mode):
                content = path.read_bytes()
            elif stat.S_ISLNK(info.st_mode):
                content = os.fsencode(os.readlink(path))
            else:
                content = b""
            mtime = 0 if stat.S_ISDIR(info.st_mode) else info.st_mtime_ns
            rel = str(path.relative_to(root))
            found[rel] = Entry(kind, content, stat.S_IMODE(info.st_mode), mtime)
    return found


def random_edits(work: Path, rng: random.Random, count: int, linked: set[int]) -> None:
    """Make ``count`` random edits in ``work``. A file that ever had a second name (its
    inode is added to ``linked``) is not changed in place: the dump names only one of
    its names (see pfs_volume.diff)."""

    def entries(*, dirs: bool) -> list[Path]:
        return [
            Path(f, n)
            for f, ds, fs in os.walk(work)
            for n in (ds if dirs else fs)
            if not Path(f, n).is_symlink()
        ]

    def free_name(folder: Path) -> Path:
        name = rng.choice(NAMES)
        while (folder / name).exists() or (folder / name).is_symlink():
            name += rng.choice("123")
        return folder / name

    for step in range(count):
        folders = [work, *entries(dirs=True)]
        files = entries(dirs=False)
        single = [f for f in files if f.lstat().st_ino not in linked]
        action = rng.choice(
            [
                "add",
                "add",
                "append",
                "delete",
                "mkdir",
                "rmtree",
                "rename",
                "rename",
                "over",
                "chmod",
                "touch",
                "save",
                "symlink",
                "link",
            ]
        )
        if action == "add" or (not files and action in ("append", "delete", "over", "save")):
            free_name(rng.choice(folders)).write_bytes(rng.randbytes(rng.randint(0, 50)))
        elif action == "append" and single:
            with open(rng.choice(single), "ab") as handle:
                handle.write(rng.randbytes(10))
        elif action == "delete":
            rng.choice(files).unlink()
        elif action == "mkdir":
            folder = free_name(rng.choice(folders))
            folder.mkdir()
            if rng.random() < 0.5:
                (folder / "inside").write_bytes(b"in")
        elif action == "rmtree" and len(folders) > 1:
            shutil.rmtree(rng.choice(folders[1:]))
        elif action == "rename" and len(folders) + len(files) > 1:
            source = rng.choice(files + folders[1:])
            targets = [f for f in folders if not f.is_relative_to(source)]
            source.rename(free_name(rng.choice(targets)))
        elif action == "over" and len(files) > 1:
            source, target = rng.sample(files, 2)
            source.rename(target)
        elif action == "chmod" and len(folders) + len(single) > 1:
            target = rng.choice(single + folders[1:])
            target.chmod(rng.choice([0o600, 0o644, 0o700, 0o755]))
        elif action == "touch" and single:
            os.utime(rng.choice(single), ns=(step * 10**9, step * 10**9))
        elif action == "save" and files:
            target = rng.choice(files)
            temporary = free_name(target.parent)
            temporary.write_bytes(rng.randbytes(20))
            temporary.rename(target)
        elif action == "symlink":
            os.symlink(rng.choice(NAMES), free_name(rng.choice(folders)))
        elif action == "link" and files:
            source = rng.choice(files)
            linked.add(source.lstat().st_ino)
            os.link(source, free_name(rng.choice(folders)))


def where_now(path: str, found: list[Change]) -> str | None:
    """Where an entry of the parent is in the child by the reported changes: its
    nearest reported ancestor (or itself) decides whether it moved or went."""
    moves = {c.old_path: c.path for c in found if c.old_path is not None}
    gone = {c.path for c in found if c.kind == "deleted"}
    parts = path.split("/")
    for i in range(len(parts), 0, -1):
        prefix = "/".join(parts[:i])
        if prefix in moves:
            return moves[prefix] + path[len(prefix) :]
        if prefix in gone:
            return None
    return path


@pytest.mark.parametrize("seed", range(4))
def test_random_edits_are_reported_exactly(pool: BtrfsPool, seed: int) -> None:
    for round_ in range(5):
        rng = random.Random(seed * 100 + round_)
        work = working_copy(pool, f"work{round_}")
        linked: set[int] = set()
        random_edits(work, rng, 25, linked)
        a = commit(pool, work, f"A{round_}")
        random_edits(work, rng, 25, linked)
        b = commit(pool, work, f"B{round_}")
        before, after, found = listing(a), listing(b), changes(a, b)
        context = f"seed {seed * 100 + round_}: {found}"
        assert changes(None, a) == [Change(path, "added") for path in sorted(before)]

        # One change per path, deletions (paths in the parent) and the rest apart.
        for deletions in (True, False):
            paths = [c.path for c in found if (c.kind == "deleted") == deletions]
            assert len(paths) == len(set(paths)), context
        # Replaying the changes on the parent's paths gives the child's paths.
        origin: dict[str, str] = {}
        for path in before:
            now = where_now(path, found)
            if now is not None:
                origin.setdefault(now, path)
        # A rename over an existing entry: what is there now came from the rename.
        origin.update({c.path: c.old_path for c in found if c.old_path is not None})
        added = {c.path for c in found if c.kind == "added"}
        assert set(origin) | added == set(after), context
        assert added.isdisjoint(origin), context
        # An entry that is not reported as changed is as it was; a reported one is not.
        flagged = {c.path for c in found if c.kind == "modified" or c.modified}
        for path, old in origin.items():
            same = before[old] == after[path]
            assert same != (path in flagged), f"{path!r} ({old!r}): {context}"
