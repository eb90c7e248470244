"""Attack: merge/revert exactness on trees the model does not cover."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pfs_volume.errors import MergeConflict
from pfs_volume.history import HistoryService
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService


def commit(repos: RepoService, repo: str, branch: str, edit) -> str:
    work = repos.working_copy(repo, branch)
    edit(work)
    repos.commit_working_copy(repo, branch, "edit", "test")
    return repos.get_branch(repo, branch).head or ""


def setup(repos: RepoService, base_edit) -> HistoryService:
    repos.create_repo("r")
    commit(repos, "r", "master", base_edit)
    repos.create_branch("r", "dev", Ref("master"))
    return HistoryService(repos)


def ours_touch(work: Path) -> None:
    (work / "ours.txt").write_text("ours")


def test_merge_keeps_their_new_xattr(repos: RepoService) -> None:
    """theirs only sets a user xattr on f; ours changes another file. The xattr is a
    change of theirs (btrfs send lists it) and must be in the result."""
    history = setup(repos, lambda w: (w / "f").write_text("data"))
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: os.setxattr(w / "f", "user.tag", b"theirs"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.getxattr(merged / "f", "user.tag") == b"theirs"


def test_merge_keeps_existing_xattr_when_theirs_edits_file(repos: RepoService) -> None:
    """base has f with an xattr; theirs only rewrites f's bytes. The result's f must
    still carry the xattr (theirs still has it)."""

    def base(w: Path) -> None:
        (w / "f").write_text("data")
        os.setxattr(w / "f", "user.keep", b"1")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: (w / "f").write_text("theirs data"))
    theirs = repos.commit_path("r", repos.get_branch("r", "dev").head)
    assert os.getxattr(theirs / "f", "user.keep") == b"1"
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert (merged / "f").read_text() == "theirs data"
    assert os.getxattr(merged / "f", "user.keep") == b"1"


def test_merge_xattr_both_sides_different_is_conflict(repos: RepoService) -> None:
    """Both sides set a different value of the same xattr: not 'the same state'."""
    history = setup(repos, lambda w: (w / "f").write_text("data"))
    commit(repos, "r", "master", lambda w: os.setxattr(w / "f", "user.tag", b"ours"))
    commit(repos, "r", "dev", lambda w: os.setxattr(w / "f", "user.tag", b"theirs"))
    try:
        result = history.merge("r", "dev", "master")
    except MergeConflict:
        return
    merged = repos.commit_path("r", result.head)
    pytest.fail(f"merged silently; f's tag is {os.getxattr(merged / 'f', 'user.tag')!r}")


def test_revert_of_xattr_change(repos: RepoService) -> None:
    repos.create_repo("r")
    commit(repos, "r", "master", lambda w: (w / "f").write_text("data"))
    c = commit(repos, "r", "master", lambda w: os.setxattr(w / "f", "user.tag", b"x"))
    made = HistoryService(repos).revert("r", "master", Ref(c))
    assert "user.tag" not in os.listxattr(repos.commit_path("r", made.id) / "f")


def test_merge_edit_through_hard_link_changes_both_names(repos: RepoService) -> None:
    """base: a and b are one inode. theirs writes new bytes through a (so b changes
    too, in theirs). Ours changes something else. The merge must hold theirs' bytes at
    both a and b (b changed on their side only)."""

    def base(w: Path) -> None:
        (w / "a").write_text("old")
        os.link(w / "a", w / "b")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        with open(w / "a", "r+") as f:
            f.write("NEW")

    commit(repos, "r", "dev", theirs)
    t = repos.commit_path("r", repos.get_branch("r", "dev").head)
    assert (t / "b").read_text() == "NEW"
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert (merged / "a").read_text() == "NEW"
    assert (merged / "b").read_text() == "NEW"


def test_merge_hard_link_added_has_the_same_bytes(repos: RepoService) -> None:
    """A hard link theirs added arrives as a file with the same bytes (pfs merges hard
    links as separate files: README, known limits)."""
    history = setup(repos, lambda w: (w / "a").write_text("x"))
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: os.link(w / "a", w / "b"))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert (merged / "a").read_text() == (merged / "b").read_text() == "x"


def test_merge_dir_mtime_and_symlink_owner(repos: RepoService) -> None:
    """theirs chowns a symlink only (lchown): the result holds the new owner."""

    def base(w: Path) -> None:
        os.symlink("target", w / "l")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: os.chown(w / "l", 1234, 1234, follow_symlinks=False))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.lstat(merged / "l").st_uid == 1234


def test_swap_two_folders(repos: RepoService) -> None:
    def base(w: Path) -> None:
        (w / "a").mkdir()
        (w / "a" / "fa").write_text("A")
        (w / "b").mkdir()
        (w / "b" / "fb").write_text("B")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)

    def swap(w: Path) -> None:
        os.rename(w / "a", w / "tmp")
        os.rename(w / "b", w / "a")
        os.rename(w / "tmp", w / "b")

    commit(repos, "r", "dev", swap)
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert (merged / "a" / "fb").read_text() == "B"
    assert (merged / "b" / "fa").read_text() == "A"
    assert not (merged / "a" / "fa").exists() and not (merged / "b" / "fb").exists()


def test_merge_same_branch_twice(repos: RepoService) -> None:
    history = setup(repos, lambda w: (w / "f").write_text("x"))
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: (w / "g").write_text("g"))
    first = history.merge("r", "dev", "master")
    assert first.outcome == "merged"
    second = history.merge("r", "dev", "master")
    assert second.outcome == "up-to-date"


def criss_cross(repos: RepoService, dev_after: str) -> HistoryService:
    """master and dev merged into each other (two merge bases: M1 with f=master-1, D1
    with f=base), then master adds h and dev writes f = ``dev_after``."""
    history = setup(repos, lambda w: ((w / "f").write_text("base"), (w / "g").write_text("g")))
    commit(repos, "r", "master", lambda w: (w / "f").write_text("master-1"))
    commit(repos, "r", "dev", lambda w: (w / "g").write_text("dev-1"))
    repos.create_branch("r", "m2", Ref("master"))
    repos.create_branch("r", "d2", Ref("dev"))
    history.merge("r", "d2", "master")
    history.merge("r", "m2", "dev")
    commit(repos, "r", "master", lambda w: (w / "h").write_text("master-2"))
    commit(repos, "r", "dev", lambda w: (w / "f").write_text(dev_after))
    bases = history.merge_bases(
        "r", repos.get_branch("r", "master").head or "", repos.get_branch("r", "dev").head or ""
    )
    assert len(bases) == 2
    return history


@pytest.mark.parametrize("dev_after", ["dev-2", "base"])
def test_criss_cross_never_drops_a_change(repos: RepoService, dev_after: str) -> None:
    """Where the two merge bases disagree (f), no base says who changed what: pfs lists
    the path as a conflict unless both sides agree (git's virtual base would merge
    f = dev's). It never keeps one side silently; the rest merges, and a strategy
    settles f."""
    history = criss_cross(repos, dev_after)
    head = repos.get_branch("r", "master").head
    with pytest.raises(MergeConflict) as refused:
        history.merge("r", "dev", "master")
    assert [c["path"] for c in refused.value.conflicts] == ["f"]
    assert repos.get_branch("r", "master").head == head
    result = history.merge("r", "dev", "master", "theirs")
    merged = repos.commit_path("r", result.head)
    assert (merged / "f").read_text() == dev_after
    assert (merged / "g").read_text() == "dev-1"
    assert (merged / "h").read_text() == "master-2"


def test_merge_chmod_through_hard_link(repos: RepoService) -> None:
    """theirs chmods a (b is the same inode, so b's mode changes too in theirs)."""

    def base(w: Path) -> None:
        (w / "a").write_text("x")
        os.chmod(w / "a", 0o644)
        os.link(w / "a", w / "b")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: os.chmod(w / "a", 0o600))
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert oct(os.stat(merged / "a").st_mode & 0o777) == "0o600"
    assert oct(os.stat(merged / "b").st_mode & 0o777) == "0o600"


def test_revert_of_edit_through_hard_link(repos: RepoService) -> None:
    repos.create_repo("r")

    def base(w: Path) -> None:
        (w / "a").write_text("old")
        os.link(w / "a", w / "b")

    commit(repos, "r", "master", base)

    def edit(w: Path) -> None:
        with open(w / "b", "r+") as f:
            f.write("NEW")

    c = commit(repos, "r", "master", edit)
    made = HistoryService(repos).revert("r", "master", Ref(c))
    tree = repos.commit_path("r", made.id)
    assert (tree / "a").read_text() == "old"
    assert (tree / "b").read_text() == "old"


def test_merge_unrelated_histories(repos: RepoService) -> None:
    repos.create_repo("r")
    repos.create_branch("r", "orphan")  # before any commit: no head
    commit(repos, "r", "master", lambda w: (w / "f").write_text("master"))
    commit(
        repos, "r", "orphan", lambda w: ((w / "f").write_text("orphan"), (w / "g").write_text("g"))
    )
    assert repos.get_commit("r", repos.get_branch("r", "orphan").head).parents == ()
    try:
        HistoryService(repos).merge("r", "orphan", "master")
    except MergeConflict as exc:
        assert [c["path"] for c in exc.conflicts] == ["f"]
        return
    pytest.fail("unrelated f merged silently")


def test_big_file_merge_exact_bytes(repos: RepoService) -> None:
    payload = os.urandom(1 << 20) * 16 + b"tail"
    history = setup(repos, lambda w: (w / "f").write_text("x"))
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: (w / "big").write_bytes(payload))
    result = history.merge("r", "dev", "master")
    assert (repos.commit_path("r", result.head) / "big").read_bytes() == payload


def test_revert_merge_commit_then_twice_and_first(repos: RepoService) -> None:
    from pfs_volume.errors import Conflict

    history = setup(repos, lambda w: (w / "f").write_text("x"))
    first = repos.get_branch("r", "master").head
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: (w / "g").write_text("g"))
    merged = history.merge("r", "dev", "master").head
    undo = history.revert("r", "master", Ref(merged))
    tree = repos.commit_path("r", undo.id)
    assert sorted(os.listdir(tree)) == ["f", "ours.txt"]
    with pytest.raises(Conflict):
        history.revert("r", "master", Ref(merged))
    again = history.revert("r", "master", Ref(undo.id))  # revert the revert
    assert sorted(os.listdir(repos.commit_path("r", again.id))) == ["f", "g", "ours.txt"]
    gone = history.revert("r", "master", Ref(first))
    assert sorted(os.listdir(repos.commit_path("r", gone.id))) == ["g", "ours.txt"]
