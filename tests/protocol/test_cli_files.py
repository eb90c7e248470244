"""The CLI's file verbs against a real API socket on a real btrfs pool: get keeps links
as links and says where it wrote, diff shows a rename that changed content."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke
from tests.protocol.test_api_names import served

__all__ = ["served"]


def pfs(api: str, *args: str) -> tuple[int, str, str]:
    result = invoke(["--api", api, *args])
    return result.exit_code, result.stdout, result.stderr


def test_get_writes_links_out_of_the_commit_as_links(
    served: str,
    volumes: VolumeService,
    tmp_path: Path,
) -> None:
    path = volumes.mount("pfs/r", "m1")
    (path / "docs" / "deep").mkdir(parents=True)
    (path / "docs" / "a.txt").write_text("alpha")
    (path / "docs" / "deep" / "b.txt").write_text("beta")
    (path / "docs" / "hard").hardlink_to(path / "docs" / "a.txt")
    (path / "absolute").symlink_to("/etc/hostname")
    (path / "climbing").symlink_to("../../../../../../etc/hostname")
    (path / "docs" / "up").symlink_to("..")
    os.mkfifo(path / "pipe")
    volumes.unmount("pfs/r", "m1")
    out = tmp_path / "out"
    code, _, err = pfs(served, "get", "r@master", "-o", str(out))
    assert code == 0, err
    assert "wrote 3 file(s), 3 symlink(s) and 3 folder(s) to " + str(out / "r") in err
    assert "skipped r/pipe: a special file, not copied" in err
    assert os.readlink(out / "r" / "absolute") == "/etc/hostname"
    assert os.readlink(out / "r" / "climbing") == "../../../../../../etc/hostname"
    assert os.readlink(out / "r" / "docs" / "up") == ".."
    assert (out / "r" / "docs" / "deep" / "b.txt").read_text() == "beta"
    assert (out / "r" / "docs" / "hard").stat().st_ino == (
        out / "r" / "docs" / "a.txt"
    ).stat().st_ino
    assert not (out / "r" / "pipe").exists()
    code, _, err = pfs(served, "get", "r@master", "docs/deep", "-o", str(out / "two"))
    assert code == 0 and (out / "two" / "deep" / "b.txt").read_text() == "beta"
    assert f"to {out / 'two' / 'deep'}" in err
    code, _, err = pfs(served, "get", "r@master", "absolute", "-o", str(out / "three"))
    assert code == 0 and os.readlink(out / "three" / "absolute") == "/etc/hostname"
    code, _, err = pfs(served, "get", "r@master", "absolute/x", "-o", str(out / "four"))
    assert code == 1 and "/absolute is a symlink (to /etc/hostname), not a folder" in err


def test_get_never_writes_through_a_link_already_in_the_destination(
    served: str,
    volumes: VolumeService,
    tmp_path: Path,
) -> None:
    path = volumes.mount("pfs/r", "m1")
    (path / "docs").mkdir()
    (path / "docs" / "a.txt").write_text("alpha")
    volumes.unmount("pfs/r", "m1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "r").symlink_to(elsewhere)
    code, _, err = pfs(served, "get", "r@master", "-o", str(out))
    assert code == 1 and "refused r/docs: r is a symlink on disk" in err
    assert list(elsewhere.iterdir()) == []


def test_diff_text_shows_renames_that_changed_and_escapes_names(
    served: str,
    volumes: VolumeService,
) -> None:
    path = volumes.mount("pfs/r", "m1")
    (path / "old").write_text("x")
    (path / "same").write_text("y")
    volumes.unmount("pfs/r", "m1")
    path = volumes.mount("pfs/r", "m2")
    (path / "old").rename(path / "new")
    (path / "new").write_text("x, changed")
    (path / "same").rename(path / "moved\tname")
    volumes.unmount("pfs/r", "m2")
    code, out, _ = pfs(served, "diff", "r@master")
    assert code == 0
    assert out.splitlines() == ["R  same -> moved\\tname", "R  old -> new (modified)"]


def test_ls_shows_link_targets(
    served: str,
    volumes: VolumeService,
) -> None:
    path = volumes.mount("pfs/r", "m1")
    (path / "to-etc").symlink_to("/etc")
    os.mkfifo(path / "pipe")
    volumes.unmount("pfs/r", "m1")
    code, out, _ = pfs(served, "ls", "r@master")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows[0][:2] == ["pipe", "other"]
    assert rows[1][:4] == ["to-etc", "->", "/etc", "symlink"]
    code, _, err = pfs(served, "cat", "r@master", "pipe")
    assert code == 1 and "/pipe is a fifo, not a regular file" in err
    assert stat.S_ISFIFO(os.lstat(volumes.repos.branch_path("r", "master") / "pipe").st_mode)
