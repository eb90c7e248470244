"""Attack: failures and crashes in the middle of a merge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pfs_volume.errors import Conflict
from pfs_volume.history import HistoryService
from pfs_volume.history import apply as apply_mod
from pfs_volume.history.journal import MergeMarker, recover_merges
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService
from tests.adversarial.test_merge_exactness import commit, ours_touch, setup


class Died(BaseException):
    """Stands for the process dying (SIGKILL / power loss): nothing after runs."""


def test_a_crash_mid_merge_is_undone_at_start_up(
    repos: RepoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon dies after apply_plan wrote some of theirs' files into master's
    working copy and before the commit (or the drop on failure). After the restart the
    working copy holds a half merge that no commit holds: the next container mount sees
    it and its unmount commits it as an ordinary commit (one parent) — a half merge with
    no record of the merge. A failed merge must change nothing."""
    history = setup(repos, lambda w: (w / "f").write_text("x"))
    ours = commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", lambda w: [(w / f"t{i}").write_text(str(i)) for i in range(5)])

    real = apply_mod._copy_file
    calls = {"n": 0}

    def dying_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Died()
        return real(*args, **kwargs)

    monkeypatch.setattr(apply_mod, "_copy_file", dying_copy)

    def no_cleanup(*args, **kwargs):
        raise Died()  # dead processes run no except blocks

    monkeypatch.setattr(repos, "drop_working_copy", no_cleanup)
    monkeypatch.setattr(MergeMarker, "clear", lambda self: None)  # nor finally blocks
    with pytest.raises(Died):
        history.merge("r", "dev", "master")
    monkeypatch.undo()

    # "restart": a new service on the same store and pool, recovering as the daemon does
    fresh = RepoService(repos.store, repos.pool)
    fresh.recover()
    assert recover_merges(fresh) == ["r/master"]
    assert fresh.get_branch("r", "master").head == ours
    work = fresh.working_copy("r", "master")
    names = sorted(os.listdir(work))
    assert names == ["f", "ours.txt"], f"half-merged working copy after restart: {names}"


def test_fast_forward_merge_over_dirty_working_copy(repos: RepoService) -> None:
    """master's working copy holds uncommitted writes; merging dev (ahead of master)
    fast-forwards. Must refuse (dirty) or keep the writes, never drop them."""
    repos.create_repo("r")
    commit(repos, "r", "master", lambda w: (w / "f").write_text("x"))
    repos.create_branch("r", "dev", Ref("master"))
    commit(repos, "r", "dev", lambda w: (w / "g").write_text("g"))
    work = repos.working_copy("r", "master")
    (work / "precious").write_text("uncommitted")
    try:
        HistoryService(repos).merge("r", "dev", "master")
    except Conflict:
        return
    assert (repos.working_copy("r", "master") / "precious").exists()


def test_merge_into_full_pool_changes_nothing(repos: RepoService) -> None:
    """Fill the pool so the merge's copy fails (ENOSPC) mid-way: branch and working
    copy as before, and the error is a clean one."""
    history = setup(repos, lambda w: (w / "f").write_text("x"))
    ours = commit(repos, "r", "master", ours_touch)
    # theirs: many small files (inline extents are copied, not reflinked -> need space)
    commit(
        repos,
        "r",
        "dev",
        lambda w: [(w / f"t{i}").write_bytes(os.urandom(1500)) for i in range(3000)],
    )
    repos.working_copy("r", "filler") if False else None
    scratch = Path(repos.pool.root) / "fill.bin"
    try:
        with open(scratch, "wb") as f:
            while True:
                f.write(b"\0" * (1 << 20))
    except OSError:
        pass
    try:
        history.merge("r", "dev", "master")
    except BaseException as exc:
        print("merge failed with", type(exc).__name__, exc)
    else:
        return  # merged fine despite a full pool
    finally:
        os.unlink(scratch)
    assert repos.get_branch("r", "master").head == ours
    assert sorted(os.listdir(repos.working_copy("r", "master"))) == ["f", "ours.txt"]
