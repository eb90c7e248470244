"""Attack: links planted by a container must never make merge/revert write or delete
outside the working copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pfs_volume.history import HistoryService
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService
from tests.adversarial.test_merge_exactness import commit, ours_touch, setup


def test_folder_becomes_link_outside(repos: RepoService, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a").write_text("host file")

    def base(w: Path) -> None:
        (w / "d").mkdir()
        (w / "d" / "a").write_text("in repo")

    history = setup(repos, base)
    commit(repos, "r", "master", ours_touch)

    def theirs(w: Path) -> None:
        shutil.rmtree(w / "d")
        os.symlink(str(outside), w / "d")
        (w / "e").mkdir()
        os.symlink(str(outside), w / "e" / "sub")

    commit(repos, "r", "dev", theirs)
    result = history.merge("r", "dev", "master")
    merged = repos.commit_path("r", result.head)
    assert os.readlink(merged / "d") == str(outside)
    assert (outside / "a").read_text() == "host file"
    # revert it: must delete the link, not what it points to
    undo = HistoryService(repos).revert("r", "master", Ref(result.head))
    assert (repos.commit_path("r", undo.id) / "d" / "a").read_text() == "in repo"
    assert sorted(os.listdir(outside)) == ["a"] and (outside / "a").read_text() == "host file"
