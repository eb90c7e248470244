"""Tests a second outside attacker wrote against the review fixes of merge and revert
(hard links past one ioctl answer, nested subvolumes, a failed drop, xattrs on every
kind of entry, deep and wide trees, odd crash markers), kept as regression tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from pfs_volume.errors import MergeConflict, PfsError
from pfs_volume.history import HistoryService
from pfs_volume.history.journal import MergeMarker, recover_merges
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService
from tests.adversarial.test_merge_exactness import commit, ours_touch, setup


def head(repos: RepoService, branch: str = "master") -> str:
    return repos.get_branch("r", branch).head or ""


# --- xattrs -----------------------------------------------------------------------


def test_symlink_trusted_xattr_merged(repos: RepoService) -> None:
    history = setup(repos, lambda w: os.symlink("/etc/passwd", w / "l"))
    commit(repos, "r", "master", ours_touch)
    commit(
        repos,
        "r",
        "dev",
        lambda w: os.setxattr(w / "l", "trusted.tag", b"theirs", follow_symlinks=False),
    )
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.getxattr(merged / "l", "trusted.tag", follow_symlinks=False) == b"theirs"
    assert os.readlink(merged / "l") == "/etc/passwd"
    assert b"trusted.tag" not in b"".join(n.encode() for n in os.listxattr("/etc/passwd"))


def test_root_xattr_removed_by_theirs(repos: RepoService) -> None:
    history = setup(repos, lambda w: os.setxattr(w, "user.root", b"1"))
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: os.removexattr(w, "user.root"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert "user.root" not in os.listxattr(merged)
    assert (merged / "ours.txt").exists()


def test_capability_kept_on_merged_file_with_other_owner(repos: RepoService) -> None:
    history = setup(repos, lambda w: (w / "f").write_text("x"))
    commit(repos, "r", "master", ours_touch)
    # v2 capability: cap_net_raw permitted + effective
    cap = bytes.fromhex("0100000200200000000000000000000000000000")

    def theirs(w: Path) -> None:
        (w / "f").write_text("bin")
        os.chown(w / "f", 1000, 1000)
        os.chmod(w / "f", 0o4755)
        os.setxattr(w / "f", "security.capability", cap)

    commit(repos, "r", "dev", theirs)
    src = repos.commit_path("r", head(repos, "dev"))
    expected = os.getxattr(src / "f", "security.capability")
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    st = os.lstat(merged / "f")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o4755)
    assert os.getxattr(merged / "f", "security.capability") == expected


def _acl(
    user_perm: int, other_uid: int, other_perm: int, mask: int, group: int, other: int
) -> bytes:
    # POSIX ACL xattr v2: header u32 version=2, entries (u16 tag, u16 perm, u32 id)
    import struct

    entries = [
        (0x01, user_perm, 0xFFFFFFFF),  # USER_OBJ
        (0x02, other_perm, other_uid),  # USER
        (0x04, group, 0xFFFFFFFF),  # GROUP_OBJ
        (0x10, mask, 0xFFFFFFFF),  # MASK
        (0x20, other, 0xFFFFFFFF),  # OTHER
    ]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_default_acl_folder_and_new_file_from_theirs(repos: RepoService) -> None:
    """ours: folder d gets a default ACL; theirs: adds d/f (no ACL). The merged d/f must
    be theirs' f exactly: no inherited ACL, theirs' mode."""

    def base(w: Path) -> None:
        (w / "d").mkdir()

    history = setup(repos, base)
    acl = _acl(7, 1234, 7, 7, 5, 5)
    commit(repos, "r", "master", lambda w: os.setxattr(w / "d", "system.posix_acl_default", acl))

    def theirs(w: Path) -> None:
        (w / "d" / "f").write_text("x")
        os.chmod(w / "d" / "f", 0o640)
        (w / "d" / "sub").mkdir()
        os.chmod(w / "d" / "sub", 0o750)

    commit(repos, "r", "dev", theirs)
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    src = repos.commit_path("r", head(repos, "dev"))
    for name in ("f", "sub"):
        assert sorted(os.listxattr(merged / "d" / name)) == sorted(
            os.listxattr(src / "d" / name)
        ), name
        assert os.lstat(merged / "d" / name).st_mode == os.lstat(src / "d" / name).st_mode, name


def test_acl_set_by_theirs_on_file(repos: RepoService) -> None:
    history = setup(repos, lambda w: (w / "f").write_text("x"))
    commit(repos, "r", "master", ours_touch)
    acl = _acl(6, 1234, 6, 6, 4, 4)
    commit(repos, "r", "dev", lambda w: os.setxattr(w / "f", "system.posix_acl_access", acl))
    src = repos.commit_path("r", head(repos, "dev"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.getxattr(merged / "f", "system.posix_acl_access") == os.getxattr(
        src / "f", "system.posix_acl_access"
    )
    assert os.lstat(merged / "f").st_mode == os.lstat(src / "f").st_mode


def test_set_xattrs_failure_half_way_changes_nothing(repos: RepoService, monkeypatch) -> None:
    import pfs_volume.history.apply as apply

    history = setup(repos, lambda w: [(w / n).write_text(n) for n in "abc"])
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        for n in "abc":
            (w / n).write_text("theirs " + n)
            os.setxattr(w / n, "user.t", b"1")
        os.unlink(w / "ours.txt") if (w / "ours.txt").exists() else None

    commit(repos, "r", "dev", theirs)
    before = head(repos)
    calls = {"n": 0}
    real = os.setxattr

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(apply.os, "setxattr", flaky)
    with pytest.raises(PfsError, match="No space left"):
        history.merge("r", "dev", "master")
    monkeypatch.setattr(apply.os, "setxattr", real)
    assert head(repos) == before
    work = repos.working_copy("r", "master")
    assert sorted(p.name for p in work.iterdir()) == ["a", "b", "c", "ours.txt"]
    assert [(work / n).read_text() for n in "abc"] == ["a", "b", "c"]
    assert os.listxattr(work / "a") == []
    assert not list((repos.pool.root / "merges").iterdir())


# --- hard links -------------------------------------------------------------------


def test_many_long_hard_links_merge(repos: RepoService) -> None:
    """A file with 400 hard links of 200-byte names (~80 KiB of names): more than the
    64 KiB INO_PATHS answer. theirs rewrites it; ours touches another file."""
    names = [f"{i:04d}" + "n" * 196 for i in range(400)]

    def base(w: Path) -> None:
        (w / "f").write_text("base")
        for n in names:
            os.link(w / "f", w / n)

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: (w / "f").write_text("theirs"))
    before = head(repos)
    try:
        result = history.merge("r", "dev", "master")
    except PfsError as exc:
        assert head(repos) == before
        pytest.fail(f"merge refused ({type(exc).__name__}): {exc}")
    merged = repos.commit_path("r", result.head)
    assert (merged / names[-1]).read_text() == "theirs"


def test_hard_link_other_name_in_folder_ours_renamed(repos: RepoService) -> None:
    """base: d/x and e/y one inode. ours renames d -> d2. theirs rewrites through e/y
    (so d/x changed too in theirs). Result must not silently hold d2/x with the old
    bytes while e/y holds theirs: conflict or both new."""

    def base(w: Path) -> None:
        (w / "d").mkdir()
        (w / "e").mkdir()
        (w / "d" / "x").write_text("base")
        os.link(w / "d" / "x", w / "e" / "y")

    history = setup(repos, base)
    commit(repos, "r", "master", lambda w: os.rename(w / "d", w / "d2"))
    commit(repos, "r", "dev", lambda w: (w / "e" / "y").write_text("theirs"))
    try:
        result = history.merge("r", "dev", "master")
    except MergeConflict:
        return
    merged = repos.commit_path("r", result.head)
    assert (merged / "e" / "y").read_text() == (merged / "d2" / "x").read_text()


# --- remove_tree ------------------------------------------------------------------


def _make_socket(path: Path) -> None:
    """A unix socket file at ``path``, bound by its name relative to its folder: a full
    path under a deep tmp_path (as under pytest-xdist) is longer than AF_UNIX allows."""
    with contextlib.chdir(path.parent), socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path.name)


def _special_tree(w: Path) -> None:
    d = w / "d"
    d.mkdir()
    os.mkfifo(d / "fifo")
    _make_socket(d / "sock")
    (d / "locked").mkdir()
    (d / "locked" / "inner").write_text("x")
    os.chmod(d / "locked", 0)
    os.symlink("/etc", d / "etc")
    os.mknod(d / "null", 0o20600, os.makedev(1, 3))


def test_theirs_deletes_folder_of_special_files(repos: RepoService) -> None:
    history = setup(repos, _special_tree)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: subprocess.run(["rm", "-rf", str(w / "d")], check=True))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert not (merged / "d").exists()
    assert Path("/etc/passwd").exists()


def test_theirs_deletes_folder_holding_immutable_file(repos: RepoService) -> None:
    def base(w: Path) -> None:
        (w / "d").mkdir()
        (w / "d" / "a").write_text("a")
        (w / "d" / "z").write_text("z")

    history = setup(repos, base)
    commit(
        repos,
        "r",
        "master",
        lambda w: subprocess.run(["chattr", "+i", str(w / "d" / "z")], check=True),
    )
    commit(repos, "r", "dev", lambda w: subprocess.run(["rm", "-rf", str(w / "d")], check=True))
    before = head(repos)
    try:
        try:
            result = history.merge("r", "dev", "master")
        except Exception as exc:
            assert head(repos) == before
            work = repos.working_copy("r", "master")
            assert (work / "d" / "a").exists()
            assert isinstance(exc, PfsError), f"raw {type(exc).__name__}: {exc}"
            return
        merged = repos.commit_path("r", result.head)
        assert not (merged / "d").exists()
    finally:
        for root in (repos.working_copy("r", "master"),):
            if (root / "d" / "z").exists():
                subprocess.run(["chattr", "-i", str(root / "d" / "z")])


# --- criss-cross ------------------------------------------------------------------


def _criss_cross(repos: RepoService, history: HistoryService, a_edit, b_edit) -> None:
    commit(repos, "r", "master", a_edit)
    commit(repos, "r", "dev", b_edit)
    repos.create_branch("r", "m2", Ref("master"))
    repos.create_branch("r", "d2", Ref("dev"))
    history.merge("r", "dev", "m2", strategy="ours")
    history.merge("r", "master", "d2", strategy="ours")


def test_criss_cross_folder_renamed_differently_in_bases(repos: RepoService) -> None:
    """bases: one renamed d->a, the other d->b (criss-cross settled by 'ours'). Then m2
    adds a file in its folder; d2 leaves everything. Merging must not silently drop
    or duplicate the folder."""

    def base(w: Path) -> None:
        (w / "d").mkdir()
        (w / "d" / "f").write_text("f")

    history = setup(repos, base)
    _criss_cross(
        repos,
        history,
        lambda w: os.rename(w / "d", w / "a"),
        lambda w: os.rename(w / "d", w / "b"),
    )
    commit(repos, "r", "m2", lambda w: (w / "a" / "new").write_text("n"))
    try:
        result = history.merge("r", "d2", "m2")
    except MergeConflict:
        return
    merged = repos.commit_path("r", result.head)
    listing = sorted(str(p.relative_to(merged)) for p in merged.rglob("*"))
    assert "a/new" in listing, listing


# --- crash markers ----------------------------------------------------------------


def test_marker_for_deleted_repo(repos: RepoService) -> None:
    setup(repos, lambda w: (w / "f").write_text("x"))
    MergeMarker.write(repos, "r", "master", head(repos))
    repos.delete_repo("r")
    assert recover_merges(repos) == []
    assert not list((repos.pool.root / "merges").iterdir())


def test_marker_for_deleted_branch(repos: RepoService) -> None:
    setup(repos, lambda w: (w / "f").write_text("x"))
    MergeMarker.write(repos, "r", "dev", head(repos, "dev"))
    repos.delete_branch("r", "dev")
    assert recover_merges(repos) == []
    assert not list((repos.pool.root / "merges").iterdir())


# --- more --------------------------------------------------------------------------


def test_failed_drop_keeps_marker(repos: RepoService, monkeypatch) -> None:
    """apply fails half way (ENOSPC) and dropping the working copy fails too (a full
    btrfs can refuse a subvolume delete; EBUSY likewise). The marker is the only record
    that the copy holds a half merge: it must stay for the next start."""
    import pfs_volume.history.apply as apply

    history = setup(repos, lambda w: [(w / n).write_text(n) for n in "abc"])
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: [(w / n).write_text("theirs " + n) for n in "abc"])
    before = head(repos)
    real_copy = apply._copy_file
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(apply, "_copy_file", flaky)

    def no_delete(path):
        from pfs_volume.errors import BtrfsCommandError

        raise BtrfsCommandError(
            ["btrfs", "subvolume", "delete", str(path)], 1, "No space left on device"
        )

    monkeypatch.setattr(repos.pool, "delete_subvolume", no_delete)
    with pytest.raises((OSError, PfsError)):
        history.merge("r", "dev", "master")
    monkeypatch.undo()
    assert head(repos) == before
    work = repos.working_copy("r", "master")
    half = sorted(p.name for p in work.iterdir())
    markers = list((repos.pool.root / "merges").iterdir())
    # Either the copy is clean, or a marker lets the next start drop it.
    assert (
        half == ["a", "b", "c", "ours.txt"]
        and [(work / n).read_text() for n in "abc"] == ["a", "b", "c"]
    ) or markers, f"half-written copy {half} and no marker left"


def test_theirs_adds_hard_link_ours_rewrites_file(repos: RepoService) -> None:
    """base: a. ours rewrites a in place. theirs: ln a b (b is another name of a).
    pfs merges names, not inodes (README): each side's change is kept at its path, so
    a holds ours' new bytes and b the bytes theirs added it with; never a lost change."""
    history = setup(repos, lambda w: (w / "a").write_text("old"))

    def ours(w: Path) -> None:
        with open(w / "a", "r+") as f:
            f.write("new")

    commit(repos, "r", "master", ours)
    commit(repos, "r", "dev", lambda w: os.link(w / "a", w / "b"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert (merged / "a").read_text() == "new" and (merged / "b").read_text() == "old"


def test_deep_and_wide_tree_merge(repos: RepoService) -> None:
    """200 folders deep, 150 folders wide (beyond the 64 open folders): both sides
    change files all over."""
    deep = "/".join(f"d{i}" for i in range(200))

    def base(w: Path) -> None:
        (w / deep).mkdir(parents=True)
        for i in range(0, 200, 7):
            p = w / "/".join(f"d{j}" for j in range(i + 1)) / "f"
            p.write_text("base")
        for i in range(150):
            (w / f"w{i}").mkdir()
            (w / f"w{i}" / "f").write_text("base")
            (w / f"w{i}" / "g").write_text("base")

    history = setup(repos, base)

    def ours(w: Path) -> None:
        for i in range(150):
            (w / f"w{i}" / "g").write_text("ours")
        (w / deep / "o").write_text("ours")

    def theirs(w: Path) -> None:
        for i in range(0, 200, 7):
            (w / "/".join(f"d{j}" for j in range(i + 1)) / "f").write_text("theirs")
        for i in range(150):
            (w / f"w{i}" / "f").write_text("theirs")
            os.setxattr(w / f"w{i}", "user.t", b"x")
        (w / deep / "t").write_text("theirs")

    commit(repos, "r", "master", ours)
    commit(repos, "r", "dev", theirs)
    result = history.merge("r", "dev", "master")
    m = repos.commit_path("r", result.head)
    assert (m / deep / "o").read_text() == "ours"
    assert (m / deep / "t").read_text() == "theirs"
    for i in range(150):
        assert (m / f"w{i}" / "f").read_text() == "theirs"
        assert (m / f"w{i}" / "g").read_text() == "ours"
        assert os.getxattr(m / f"w{i}", "user.t") == b"x"
    for i in range(0, 200, 7):
        assert (m / "/".join(f"d{j}" for j in range(i + 1)) / "f").read_text() == "theirs"


def test_theirs_replaces_deep_folder_with_file(repos: RepoService) -> None:
    """theirs removes a 300-deep folder chain and puts a file at its top; ours touches
    something else."""
    deep = "/".join(["x"] * 300)

    def base(w: Path) -> None:
        (w / "top" / deep).mkdir(parents=True)
        (w / "top" / deep / "f").write_text("f")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        subprocess.run(["rm", "-rf", str(w / "top")], check=True)
        (w / "top").write_text("file now")

    commit(repos, "r", "dev", theirs)
    result = history.merge("r", "dev", "master")
    m = repos.commit_path("r", result.head)
    assert (m / "top").read_text() == "file now"


def test_ours_adds_hard_link_theirs_rewrites_file(repos: RepoService) -> None:
    """Mirror: base a. ours: ln a b. theirs rewrites a in place: a takes theirs' new
    bytes (a new file: the link is not kept), b keeps what ours added it with."""
    history = setup(repos, lambda w: (w / "a").write_text("old"))
    commit(repos, "r", "master", lambda w: os.link(w / "a", w / "b"))

    def theirs(w: Path) -> None:
        with open(w / "a", "r+") as f:
            f.write("new")

    commit(repos, "r", "dev", theirs)
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert (merged / "a").read_text() == "new" and (merged / "b").read_text() == "old"


def test_btrfs_compression_property_merged(repos: RepoService) -> None:
    history = setup(repos, lambda w: (w / "d").mkdir())
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        os.setxattr(w / "d", "btrfs.compression", b"zstd")
        (w / "d" / "f").write_text("x" * 100000)

    commit(repos, "r", "dev", theirs)
    src = repos.commit_path("r", head(repos, "dev"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.listxattr(merged / "d") == os.listxattr(src / "d")
    assert os.listxattr(merged / "d" / "f") == os.listxattr(src / "d" / "f")


def test_theirs_removes_compression_property(repos: RepoService) -> None:
    def base(w: Path) -> None:
        (w / "d").mkdir()
        os.setxattr(w / "d", "btrfs.compression", b"zstd")
        (w / "d" / "f").write_text("x" * 1000)

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        os.removexattr(w / "d", "btrfs.compression")
        (w / "d" / "f").write_text("y" * 1000)

    commit(repos, "r", "dev", theirs)
    src = repos.commit_path("r", head(repos, "dev"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.listxattr(merged / "d") == os.listxattr(src / "d")
    assert os.listxattr(merged / "d" / "f") == os.listxattr(src / "d" / "f")


def test_xattr_set_through_one_hard_link_name(repos: RepoService) -> None:
    def base(w: Path) -> None:
        (w / "a").write_text("x")
        (w / "sub").mkdir()
        os.link(w / "a", w / "sub" / "b")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: os.setxattr(w / "a", "user.t", b"1"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.getxattr(merged / "sub" / "b", "user.t") == b"1"


def test_revert_hard_link_rewrite(repos: RepoService) -> None:
    def base(w: Path) -> None:
        (w / "a").write_text("old")
        (w / "sub").mkdir()
        os.link(w / "a", w / "sub" / "b")

    repos.create_repo("r")
    commit(repos, "r", "master", base)
    c = commit(repos, "r", "master", lambda w: (w / "a").write_text("new"))
    commit(repos, "r", "master", ours_touch)
    history = HistoryService(repos)
    made = history.revert("r", "master", Ref(c))
    m = repos.commit_path("r", made.id)
    assert (m / "a").read_text() == "old"
    assert (m / "sub" / "b").read_text() == "old"


def test_criss_cross_base_file_differs_ours_deletes_folder(repos: RepoService) -> None:
    def base(w: Path) -> None:
        (w / "d").mkdir()
        (w / "d" / "f").write_text("base")

    history = setup(repos, base)
    _criss_cross(
        repos,
        history,
        lambda w: (w / "d" / "f").write_text("A"),
        lambda w: (w / "d" / "f").write_text("B"),
    )
    commit(repos, "r", "m2", lambda w: subprocess.run(["rm", "-rf", str(w / "d")], check=True))
    try:
        result = history.merge("r", "d2", "m2")
    except MergeConflict:
        return
    merged = repos.commit_path("r", result.head)
    pytest.fail(f"merged silently: d exists={(merged / 'd').exists()}")


def test_theirs_deletes_folder_holding_nested_subvolume(repos: RepoService) -> None:
    """A container made a btrfs subvolume inside its working copy (pool.delete_subvolume
    expects that). Commits hold it as an empty placeholder; its files are in no commit.
    theirs deletes the folder: the merge must not erase those files behind the user's
    back (refuse, or keep them)."""

    def base(w: Path) -> None:
        (w / "d").mkdir()
        (w / "d" / "f").write_text("f")

    history = setup(repos, base)

    def ours(w: Path) -> None:
        subprocess.run(
            ["btrfs", "subvolume", "create", str(w / "d" / "sv")], check=True, capture_output=True
        )
        (w / "d" / "sv" / "precious").write_text("only copy")
        (w / "ours.txt").write_text("o")

    commit(repos, "r", "master", ours)
    commit(repos, "r", "dev", lambda w: subprocess.run(["rm", "-rf", str(w / "d")], check=True))
    work = repos.working_copy("r", "master")
    assert (work / "d" / "sv" / "precious").read_text() == "only copy"
    outcome = "merged"
    try:
        history.merge("r", "dev", "master")
    except (PfsError, OSError) as exc:
        outcome = f"refused: {exc!r}"
    work = repos.working_copy("r", "master")
    assert (work / "d" / "sv" / "precious").exists(), (
        f"uncommitted subvolume data erased ({outcome})"
    )


def test_twenty_hard_links_block_merge(repos: RepoService) -> None:
    """The kernel caps BTRFS_IOC_INO_PATHS's answer at 4,096 bytes whatever size is
    passed (fs/btrfs/ioctl.c: size = min(ipa->size, 4096)), so the 64 KiB buffer is
    never used: 20 hard links with ~220-byte paths (or ~315 four-byte names) already
    "do not fit". theirs rewrites the file; ours touches another file."""
    folder = "data/" + "p" * 100
    names = [f"{folder}/{i:02d}" + "n" * 110 for i in range(20)]

    def base(w: Path) -> None:
        (w / folder).mkdir(parents=True)
        (w / "f").write_text("base")
        for n in names:
            os.link(w / "f", w / n)

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: (w / "f").write_text("theirs"))
    before = head(repos)
    try:
        result = history.merge("r", "dev", "master", strategy="theirs")
    except PfsError as exc:
        assert head(repos) == before
        pytest.fail(f"merge refused ({type(exc).__name__}, status {exc.status}): {exc}")
    merged = repos.commit_path("r", result.head)
    assert (merged / names[-1]).read_text() == "theirs"


def test_folder_rename_with_hard_linked_file_blocks_merge(repos: RepoService) -> None:
    """No byte changes at all: theirs only renames a folder holding a file with 20
    hard links of ~220-byte paths. Merge (and any strategy) is refused."""
    folder = "data/" + "p" * 100
    names = [f"{folder}/{i:02d}" + "n" * 110 for i in range(20)]

    def base(w: Path) -> None:
        (w / folder).mkdir(parents=True)
        (w / folder / "f").write_text("base")
        for n in names:
            os.link(w / folder / "f", w / n)

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: os.rename(w / "data", w / "moved"))
    try:
        result = history.merge("r", "dev", "master", strategy="theirs")
    except PfsError as exc:
        pytest.fail(f"merge refused ({type(exc).__name__}, status {exc.status}): {exc}")
    merged = repos.commit_path("r", result.head)
    assert (merged / "moved" / ("p" * 100) / "f").read_text() == "base"


def test_revert_blocked_by_twenty_hard_links(repos: RepoService) -> None:
    folder = "data/" + "p" * 100
    names = [f"{folder}/{i:02d}" + "n" * 110 for i in range(20)]

    def base(w: Path) -> None:
        (w / folder).mkdir(parents=True)
        (w / "f").write_text("base")
        for n in names:
            os.link(w / "f", w / n)

    repos.create_repo("r")
    commit(repos, "r", "master", base)
    c = commit(repos, "r", "master", lambda w: (w / "f").write_text("new"))
    try:
        made = HistoryService(repos).revert("r", "master", Ref(c))
    except PfsError as exc:
        pytest.fail(f"revert refused ({type(exc).__name__}, status {exc.status}): {exc}")
    assert (repos.commit_path("r", made.id) / names[0]).read_text() == "base"


def test_special_files_with_trusted_xattrs(repos: RepoService) -> None:
    history = setup(repos, lambda w: (w / "d").mkdir())
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        os.mkfifo(w / "d" / "fifo")
        os.mknod(w / "d" / "null", 0o20644, os.makedev(1, 3))
        _make_socket(w / "d" / "sock")
        for n in ("fifo", "null", "sock"):
            os.setxattr(w / "d" / n, "trusted.t", n.encode(), follow_symlinks=False)
        os.setxattr(w / "d", "trusted.dir", b"1")

    commit(repos, "r", "dev", theirs)
    result = history.merge("r", "dev", "master")
    m = repos.commit_path("r", result.head)
    for n in ("fifo", "null", "sock"):
        assert os.getxattr(m / "d" / n, "trusted.t", follow_symlinks=False) == n.encode()
    assert os.getxattr(m / "d", "trusted.dir") == b"1"


def test_theirs_replaces_file_with_folder_same_name_xattrs(repos: RepoService) -> None:
    def base(w: Path) -> None:
        (w / "x").write_text("file")
        os.setxattr(w / "x", "user.a", b"file")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        os.unlink(w / "x")
        (w / "x").mkdir()
        os.setxattr(w / "x", "user.b", b"dir")
        (w / "x" / "in").write_text("i")

    commit(repos, "r", "dev", theirs)
    result = history.merge("r", "dev", "master")
    m = repos.commit_path("r", result.head)
    assert os.listxattr(m / "x") == ["user.b"]


def test_recover_merges_survives_odd_entries(repos: RepoService) -> None:
    """A stray folder or a non-UTF-8 file in <pool>/merges must not stop start-up."""
    setup(repos, lambda w: (w / "f").write_text("x"))
    folder = repos.pool.root / "merges"
    folder.mkdir(exist_ok=True)
    (folder / "0-stray-folder").mkdir()
    (folder / "1-binary").write_bytes(b"\xff\xfe")
    MergeMarker.write(repos, "r", "master", head(repos))
    (repos.working_copy("r", "master") / "half").write_text("half merge")
    try:
        dropped = recover_merges(repos)
    except Exception as exc:
        pytest.fail(f"start-up recovery raised {exc!r}")
    assert dropped == ["r/master"]
