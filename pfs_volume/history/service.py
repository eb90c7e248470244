"""Operations that combine commits on a branch: revert and merge, exact on trees.

Both are a three-way merge (``threeway``) of snapshots read without following links
(``snapshots``) and written into the branch's working copy (``apply``), then committed:

* merge SOURCE into TARGET: base = the nearest common ancestor in the commit graph
  (after criss-cross merges there are several: where they disagree on a path, only
  both sides agreeing settles it, anything else is a conflict),
  ours = TARGET's head, theirs = SOURCE's head. The merge commit records both heads
  (``parents``), so the next merge of the same branches starts from this one and only
  sees what changed since. When one head descends from the other it is up to date or a
  fast-forward instead.
* revert C on a branch: base = C, ours = the branch's head, theirs = C's first parent
  (the empty tree for a first commit), as git reverts: C's changes are undone unless
  the branch changed the same paths again since.

A conflict refuses the whole operation with every conflicting path and what each side
did there, and changes nothing; for merge a strategy (``ours``/``theirs``) settles them.
A failure while writing the working copy drops it (it was clean: the next use makes it
again from the head), so a failed merge or revert changes nothing either; a crash does
the same at the next start (``journal``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pfs_volume.btrfs.changes import changes
from pfs_volume.diff import Change
from pfs_volume.errors import Conflict, InvalidRequest, MergeConflict, NotFound
from pfs_volume.failpoints import failpoint
from pfs_volume.filenames import printable, to_wire
from pfs_volume.history.ancestry import GraphNode, merge_bases
from pfs_volume.history.apply import apply_plan, refuse_nested_subvolumes, removals
from pfs_volume.history.journal import MergeMarker
from pfs_volume.history.snapshots import SnapshotTrees
from pfs_volume.history.threeway import PathConflict, Plan, Side, plan, same
from pfs_volume.meta import CommitRecord
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

REVERT_ORIGIN = "revert"
MERGE_ORIGIN = "merge"
STRATEGIES = {"ours": Side.OURS, "theirs": Side.THEIRS}
SHOWN_CONFLICTS = 20
"""Conflicts named in the error's message; the error's ``conflicts`` lists them all."""


@dataclass(frozen=True)
class MergeResult:
    """How a merge went: "fast-forward", "merged" or "up-to-date", and the new head."""

    outcome: str
    head: str
    commit: CommitRecord | None = None


class HistoryService:
    """Revert and merge on branches.

    Args:
        repos: the commit graph service.
    """

    def __init__(self, repos: RepoService) -> None:
        self.repos = repos

    def revert(self, repo: str, branch: str, ref: Ref) -> CommitRecord:
        """Make a new commit on ``branch`` that undoes the commit ``ref`` names (a merge
        commit is undone against its first parent).

        Raises:
            NotFound: no such repo, branch or commit, or pruned data.
            InUse: the branch is mounted. Conflict: its working copy is dirty, the
                branch is a pipeline's output, or the commit changed nothing that can
                be undone. MergeConflict: the branch changed some of the commit's paths
                again since (each listed).
        """
        target = self.repos.require_data(self.repos.resolve_commit(repo, ref))
        parent = (
            self.repos.require_data(self.repos.get_commit(repo, target.parent))
            if (target.parent)
            else None
        )
        with self.repos.branch_lock(repo, branch):
            head = self.repos.get_branch(repo, branch).head
            if head is None:
                raise Conflict(f"branch {repo}/{branch} has no commits to revert on")
            self.repos.refuse_if_busy(repo, branch, "revert on")
            with self._trees(repo, target.id, head, parent.id if parent else None) as trees:
                undo = self._plan(trees, None)
                if undo.conflicts:
                    raise _refusal(
                        f"cannot revert {target.id} on {repo}/{branch}: the branch changed "
                        "these paths again since",
                        undo.conflicts,
                        ours="the branch since",
                        theirs="the revert",
                    )
                if not undo.take:
                    raise Conflict(f"commit {target.id} changed nothing that could be undone")
                made = self._write(
                    repo,
                    branch,
                    trees,
                    undo,
                    head,
                    f"revert {target.id[:12]}: {target.message}",
                    REVERT_ORIGIN,
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
            InUse: the target is mounted. Conflict: a dirty working copy, or the
                target is a pipeline's output (only its jobs write there).
            MergeConflict: paths the two sides changed in ways that cannot both hold (each
                listed with what each side did), and no strategy given.
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
            self.repos.refuse_if_owned(repo, target, "merge into")  # a fast-forward too
            bases = self.merge_bases(repo, ours, theirs) if ours is not None else []
            if ours is not None and theirs in bases:
                return MergeResult("up-to-date", ours)
            if ours is None or ours in bases:
                reset = self.repos.reset_branch(repo, target, Ref(theirs))
                log.info("repo=%s merged %s into %s by fast-forward", repo, source, target)
                return MergeResult("fast-forward", reset.branch.head or theirs)
            self.repos.refuse_if_busy(repo, target, "merge into")
            base = bases[0] if bases else None
            with self._trees(repo, base, ours, theirs) as trees:
                unsure = self._disagreements(repo, bases)
                merged = self._plan(trees, STRATEGIES.get(strategy or ""), unsure)
                if merged.conflicts:
                    raise _refusal(
                        f"cannot merge {source} into {target}: both changed these paths in "
                        "ways that cannot both hold; give --strategy ours or theirs to settle "
                        "them",
                        merged.conflicts,
                        ours=target,
                        theirs=source,
                    )
                made = self._write(
                    repo,
                    target,
                    trees,
                    merged,
                    ours,
                    f"merge {source} ({theirs[:12]}) into {target}",
                    MERGE_ORIGIN,
                    merge_parents=(theirs,),
                )
            assert made is not None  # a merge commit is made even when no file changed
            log.info("repo=%s merged %s into %s: %s", repo, source, target, made.id)
            return MergeResult("merged", made.id, made)

    def merge_bases(self, repo: str, ours: str, theirs: str) -> list[str]:
        """The nearest common ancestors of two commits, newest first (see ``ancestry``)."""

        def lookup(commit_id: str) -> GraphNode:
            commit = self.repos.get_commit(repo, commit_id)
            return GraphNode(commit.id, commit.created, commit.parents)

        return merge_bases(ours, theirs, lookup)

    def _disagreements(self, repo: str, bases: list[str]) -> set[str]:
        """The paths where several merge bases (after criss-cross merges) hold different
        things: there no base says what either side changed, so the plan settles such a
        path only when both sides agree on it (git builds a virtual base instead)."""
        unsure: set[str] = set()
        for other in bases[1:]:
            with self._trees(repo, bases[0], other, None) as pair:
                listed = _changes(pair.roots[Side.BASE], pair.roots[Side.OURS])
                for path in pair.touched(Side.OURS, listed):
                    if not same(pair, Side.BASE, Side.OURS, path):
                        unsure.add(path)
        return unsure

    def _plan(
        self, trees: SnapshotTrees, strategy: Side | None, unsure: set[str] | None = None
    ) -> Plan:
        """Plan the three-way merge of ``trees``. The two ``btrfs send`` listings run at
        once: most of their time is the kernel's walk, not Python's."""
        base = trees.roots[Side.BASE]
        # Two threads per merge, ended with it: bounded by the API's worker threads.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pfs-merge") as pool:
            listings = {
                side: pool.submit(_changes, base, trees.roots[side])
                for side in (Side.OURS, Side.THEIRS)
            }
            touched = {side: trees.touched(side, job.result()) for side, job in listings.items()}
        return plan(trees, touched[Side.OURS], touched[Side.THEIRS], strategy, unsure or set())

    def _write(
        self,
        repo: str,
        branch: str,
        trees: SnapshotTrees,
        chosen: Plan,
        ours: str,
        message: str,
        origin: str,
        merge_parents: tuple[str, ...] = (),
    ) -> CommitRecord | None:
        """Write the plan into the branch's (clean) working copy and commit it; on any
        failure (or, through the marker, a crash) drop the working copy, so the branch
        is as it was."""
        work = self.repos.working_copy(repo, branch)
        refuse_nested_subvolumes(work, removals(trees, chosen.take))
        marker = MergeMarker.write(self.repos, repo, branch, ours)
        try:
            apply_plan(work, trees, chosen.take)
            failpoint("merge.before_commit")
            made = self.repos.commit_working_copy(
                repo, branch, message, origin, merge_parents=merge_parents
            )
        except BaseException:
            if self.repos.get_branch(repo, branch).head == ours:
                # If this fails too, the marker stays: start-up drops the copy.
                self.repos.drop_working_copy(repo, branch)
            marker.clear()
            raise
        marker.clear()
        return made

    @contextmanager
    def _trees(
        self, repo: str, base: str | None, ours: str, theirs: str | None
    ) -> Iterator[SnapshotTrees]:
        roots = [self._root(repo, c) for c in (base, ours, theirs)]
        with SnapshotTrees(*roots) as trees:
            yield trees

    def _root(self, repo: str, commit: str | None) -> Path | None:
        if commit is None:
            return None
        return self.repos.local_commit(
            repo, self.repos.require_data(self.repos.get_commit(repo, commit)).id
        )


def _changes(base: Path | None, side: Path | None) -> list[Change] | None:
    """What ``btrfs send`` lists from ``base`` to ``side``; None when either is the empty
    tree (every path of the other counts then)."""
    if base is None or side is None:
        return None
    return changes(base, side)


def _refusal(
    message: str, conflicts: list[PathConflict], *, ours: str, theirs: str
) -> MergeConflict:
    shown = "; ".join(
        f"{printable(c.path)} ({ours}: {printable(c.ours)}; {theirs}: {printable(c.theirs)})"
        for c in conflicts[:SHOWN_CONFLICTS]
    )
    more = len(conflicts) - SHOWN_CONFLICTS
    tail = f"; and {more} more" if more > 0 else ""
    listed = []
    for c in conflicts:
        path, encoding = to_wire(c.path)
        # A folder conflict names the folder in its text: escaped for people.
        listed.append(
            {
                "path": path,
                "path_encoding": encoding,
                "ours": printable(c.ours),
                "theirs": printable(c.theirs),
            }
        )
    return MergeConflict(f"{message}: {shown}{tail}", listed)
