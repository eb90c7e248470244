"""Operations that combine commits on a branch: revert (merge comes next).

Revert applies a commit's change set backwards on a branch's working copy and commits
the result. A path the branch changed again after that commit is a conflict: the revert
is refused with the list of such paths and nothing changes.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
from pathlib import Path

from pfs_volume.diff import Change
from pfs_volume.errors import Conflict
from pfs_volume.meta import CommitRecord
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

REVERT_ORIGIN = "revert"


class HistoryService:
    """Revert (and later merge) on branches.

    Args:
        repos: the commit graph service.
    """

    def __init__(self, repos: RepoService) -> None:
        self.repos = repos

    def revert(self, repo: str, branch: str, ref: Ref) -> CommitRecord:
        """Make a new commit on ``branch`` that undoes the commit ``ref`` names.

        Raises:
            NotFound: no such repo, branch or commit, or pruned data.
            InUse: the branch is mounted. Conflict: the branch changed one of the commit's
                paths again since (the paths are listed), or its working copy is dirty.
        """
        undone, target, changes = self.repos.diff(repo, ref)
        with self.repos.branch_lock(repo, branch):
            head = self.repos.get_branch(repo, branch).head
            if head is None:
                raise Conflict(f"branch {repo}/{branch} has no commits to revert on")
            self.repos.refuse_if_busy(repo, branch, "revert on")
            now = self.repos.commit_path(repo, head)
            then = self.repos.commit_path(repo, target.id)
            before = self.repos.commit_path(repo, undone.id) if undone else None
            touched = sorted({p for c in changes for p in (c.path, c.old_path) if p})
            clashes = [p for p in touched if not _same(now / p, then / p)]
            if clashes:
                raise Conflict(
                    f"cannot revert {target.id} on {repo}/{branch}: the branch changed "
                    f"these paths again since: {', '.join(clashes)}"
                )
            work = self.repos.working_copy(repo, branch)
            for change in sorted(changes, key=_undo_order):
                _undo(change, work, before)
            made = self.repos.commit_working_copy(
                repo, branch, f"revert {target.id[:12]}: {target.message}", REVERT_ORIGIN
            )
            if made is None:
                raise Conflict(f"commit {target.id} changed nothing that could be undone")
            log.info("repo=%s branch=%s commit=%s reverted %s", repo, branch, made.id, target.id)
            return made


def _undo_order(change: Change) -> tuple[int, int, str]:
    # Removals deepest first, then restorations shallowest first.
    removing = change.kind == "added"
    depth = change.path.count("/")
    return (0 if removing else 1, -depth if removing else depth, change.path)


def _undo(change: Change, work: Path, before: Path | None) -> None:
    if change.kind == "added":
        _remove(work / change.path)
    elif change.kind == "renamed":
        assert change.old_path is not None
        _remove(work / change.path)
        _restore(change.old_path, work, before)
    else:  # modified or deleted: back to what it was
        _remove(work / change.path)
        _restore(change.path, work, before)


def _restore(path: str, work: Path, before: Path | None) -> None:
    source = before / path if before is not None else None
    if source is None or not (source.exists() or source.is_symlink()):
        return
    target = work / path
    if target.exists() or target.is_symlink():
        return  # restored already with its folder
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _same(a: Path, b: Path) -> bool:
    """True when two paths hold the same thing (folders: being folders is enough)."""
    a_there, b_there = os.path.lexists(a), os.path.lexists(b)
    if not (a_there and b_there):
        return a_there == b_there
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    if a.is_dir() or b.is_dir():
        return a.is_dir() and b.is_dir()
    return filecmp.cmp(a, b, shallow=False)
