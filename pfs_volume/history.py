"""Operations that combine commits on a branch: revert and merge.

Revert applies a commit's change set backwards on a branch's working copy and commits
the result. A path the branch changed again after that commit is a conflict: the revert
is refused with the list of such paths and nothing changes.

Merge fast-forwards when it can. Otherwise it merges file by file against the common
ancestor: a path changed on one side takes that side; a path changed on both sides to
the same result is fine; any other path is a conflict, refused with the list unless a
strategy (``ours`` keeps the target's, ``theirs`` takes the source's) settles them all.
Commits record one parent, so after an earlier merge the ancestor is the older fork
point; paths both sides hold alike (what that merge brought) are not conflicts.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pfs_volume.diff import Change
from pfs_volume.errors import Conflict, InvalidRequest, NotFound
from pfs_volume.meta import CommitRecord
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

REVERT_ORIGIN = "revert"
MERGE_ORIGIN = "merge"
STRATEGIES = ("ours", "theirs")


@dataclass(frozen=True)
class MergeResult:
    """How a merge went: "fast-forward", "merged" or "up-to-date", and the new head."""

    outcome: str
    head: str
    commit: CommitRecord | None = None


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
            now = self.repos.local_commit(repo, head)
            then = self.repos.local_commit(repo, target.id)
            before = self.repos.local_commit(repo, undone.id) if undone else None
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

    def merge(
        self, repo: str, source: str, target: str, strategy: str | None = None
    ) -> MergeResult:
        """Merge branch ``source`` into branch ``target``.

        Raises:
            InvalidRequest: an unknown strategy, or a branch merged into itself.
            NotFound: no such branch, or a source with no commits.
            InUse: the target is mounted. Conflict: paths changed differently on both
                sides (listed) and no strategy given, or a dirty working copy.
        """
        if strategy is not None and strategy not in STRATEGIES:
            raise InvalidRequest(f"strategy must be ours or theirs, not {strategy!r}")
        if source == target:
            raise InvalidRequest(f"cannot merge branch {source} into itself")
        theirs = self.repos.get_branch(repo, source).head
        if theirs is None:
            raise NotFound(f"branch {repo}/{source} has no commits to merge")
        with self.repos.branch_lock(repo, target):
            ours = self.repos.get_branch(repo, target).head
            if ours is not None and theirs in self._ancestry(repo, ours):
                return MergeResult("up-to-date", ours)
            if ours is None or ours in self._ancestry(repo, theirs):
                _, record = self.repos.reset_branch(repo, target, Ref(theirs))
                log.info("repo=%s merged %s into %s by fast-forward", repo, source, target)
                return MergeResult("fast-forward", record.head or theirs)
            return self._three_way(repo, source, target, ours, theirs, strategy)

    def _three_way(
        self, repo: str, source: str, target: str, ours: str, theirs: str, strategy: str | None
    ) -> MergeResult:
        self.repos.refuse_if_busy(repo, target, "merge into")
        ancestors = self._ancestry(repo, theirs)
        base = next((c for c in self._ancestry(repo, ours) if c in ancestors), None)
        ours_root = self.repos.local_commit(repo, ours)
        theirs_root = self.repos.local_commit(repo, theirs)
        base_ref = Ref(base) if base is not None else None
        changed_theirs = _paths(self._changes(repo, theirs, base_ref))
        changed_ours = _paths(self._changes(repo, ours, base_ref))
        take, clashes = [], []
        for path in sorted(changed_theirs):
            if path not in changed_ours:
                take.append(path)
            elif not _same(ours_root / path, theirs_root / path):
                clashes.append(path)
        if clashes and strategy is None:
            raise Conflict(
                f"cannot merge {source} into {target}: both changed these paths "
                f"differently: {', '.join(clashes)}; give --strategy ours or theirs"
            )
        if strategy == "theirs":
            take += clashes
        work = self.repos.working_copy(repo, target)
        for path in sorted(take, key=lambda p: -p.count("/")):
            _remove(work / path)
        for path in sorted(take, key=lambda p: p.count("/")):
            _restore(path, work, theirs_root)
        made = self.repos.commit_working_copy(
            repo, target, f"merge {source} ({theirs[:12]}) into {target}", MERGE_ORIGIN
        )
        head = made.id if made is not None else ours
        log.info("repo=%s merged %s into %s: %s", repo, source, target, head)
        return MergeResult("merged", head, made)

    def _changes(self, repo: str, commit: str, base: Ref | None) -> list[Change]:
        """What ``commit`` changed since ``base``; everything in it when there is none
        (two branches that share no commit)."""
        if base is not None:
            return self.repos.diff(repo, Ref(commit), base)[2]
        root = self.repos.local_commit(repo, commit)
        return [Change(str(p.relative_to(root)), "added") for p in root.rglob("*")]

    def _ancestry(self, repo: str, commit: str) -> list[str]:
        """``commit`` and its ancestors, newest first."""
        chain = []
        current: str | None = commit
        while current is not None:
            chain.append(current)
            current = self.repos.get_commit(repo, current).parent
        return chain


def _paths(changes: list[Change]) -> set[str]:
    return {p for c in changes for p in (c.path, c.old_path) if p}


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
