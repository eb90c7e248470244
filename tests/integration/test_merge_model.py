"""Merge and revert on real btrfs against a pure model of trees (``tests/trees_model``).

Hypothesis makes a random base tree and random edits on two branches — files, folders,
renames of files and folders, deletes, mode changes (setuid included), symlinks
(absolute and climbing out), FIFOs, names with spaces and with bytes that are not UTF-8
— commits them through pfs, and merges (or reverts). pfs must give exactly the model's
result, or refuse with exactly the model's conflicting paths and change nothing: every
change of each side is in the result or reported.
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfs_volume.errors import Conflict, MergeConflict
from pfs_volume.filenames import from_wire
from pfs_volume.history import HistoryService
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService
from tests import trees_model
from tests.trees_model import Tree

EXAMPLES = int(os.environ.get("PFS_MODEL_EXAMPLES", "100"))
"""Merges per run (reverts: half as many); set PFS_MODEL_EXAMPLES higher for a deep run."""
_names = itertools.count()
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def commit(repos: RepoService, repo: str, branch: str, edits: list[trees_model.Edit]) -> str:
    work = repos.working_copy(repo, branch)
    for edit in edits:
        edit.apply_disk(work)
    repos.commit_working_copy(repo, branch, "edits", "test")
    return repos.get_branch(repo, branch).head or ""


def tree_at(repos: RepoService, repo: str, commit_id: str) -> Tree:
    return trees_model.read_tree(repos.commit_path(repo, commit_id))


def working_tree(repos: RepoService, repo: str, branch: str) -> Tree:
    return trees_model.read_tree(repos.working_copy(repo, branch))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_merge_is_the_model_merge(repos: RepoService, data: st.DataObject) -> None:
    repo = f"m{next(_names)}"
    repos.create_repo(repo)
    try:
        check_merge(repos, repo, data)
    finally:
        repos.delete_repo(repo)  # thousands of examples while shrinking: keep the pool free


def check_merge(repos: RepoService, repo: str, data: st.DataObject) -> None:
    history = HistoryService(repos)
    base_edits = trees_model.draw_edits(data.draw, {}, data.draw(st.integers(2, 9)))
    base_head = commit(repos, repo, "master", base_edits)
    base = tree_at(repos, repo, base_head)
    repos.create_branch(repo, "dev", Ref("master"))
    ours_edits = trees_model.draw_edits(data.draw, base, data.draw(st.integers(0, 4)))
    theirs_edits = trees_model.draw_edits(data.draw, base, data.draw(st.integers(1, 4)))
    strategy = data.draw(st.sampled_from([None, None, "ours", "theirs"]))
    ours_head = commit(repos, repo, "master", ours_edits)
    theirs_head = commit(repos, repo, "dev", theirs_edits)
    ours, theirs = tree_at(repos, repo, ours_head), tree_at(repos, repo, theirs_head)
    expected, conflicts = trees_model.merge(base, ours, theirs, strategy)

    try:
        result = history.merge(repo, "dev", "master", strategy)
    except MergeConflict as exc:
        assert {from_wire(c["path"], c["path_encoding"]) for c in exc.conflicts} == conflicts
        assert all(c["ours"] and c["theirs"] for c in exc.conflicts)
        assert repos.get_branch(repo, "master").head == ours_head
        assert working_tree(repos, repo, "master") == ours
        return
    assert not conflicts, f"pfs merged what the model refuses: {sorted(conflicts)}"
    head = repos.get_branch(repo, "master").head
    assert head == result.head
    assert tree_at(repos, repo, result.head) == expected
    if ours_head == base_head:
        assert result.outcome == "fast-forward" and head == theirs_head
    else:
        assert result.outcome == "merged"
        assert repos.get_commit(repo, result.head).parents == (ours_head, theirs_head)


@settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_revert_is_the_model_revert(repos: RepoService, data: st.DataObject) -> None:
    repo = f"r{next(_names)}"
    repos.create_repo(repo)
    try:
        check_revert(repos, repo, data)
    finally:
        repos.delete_repo(repo)


def check_revert(repos: RepoService, repo: str, data: st.DataObject) -> None:
    history = HistoryService(repos)
    heads, trees = [], [{"": trees_model.ROOT}]
    for _ in range(data.draw(st.integers(2, 4))):
        edits = trees_model.draw_edits(data.draw, trees[-1], data.draw(st.integers(1, 4)))
        heads.append(commit(repos, repo, "master", edits))
        trees.append(tree_at(repos, repo, heads[-1]))
    undone = data.draw(st.integers(0, len(heads) - 1))
    # Reverting commit i is merging its parent's tree into the head, from commit i.
    expected, conflicts = trees_model.merge(trees[undone + 1], trees[-1], trees[undone])

    try:
        made = history.revert(repo, "master", Ref(heads[undone]))
    except MergeConflict as exc:
        assert {from_wire(c["path"], c["path_encoding"]) for c in exc.conflicts} == conflicts
        assert repos.get_branch(repo, "master").head == heads[-1]
        assert working_tree(repos, repo, "master") == trees[-1]
        return
    except Conflict as exc:
        assert "changed nothing" in str(exc) and expected == trees[-1] and not conflicts
        return
    assert not conflicts, f"pfs reverted what the model refuses: {sorted(conflicts)}"
    assert made.parents == (heads[-1],)
    assert tree_at(repos, repo, made.id) == expected


def test_the_model_itself_keeps_both_sides() -> None:
    """The model is what the tests trust: a folder rename against an edit inside it is
    a conflict there, and a mode change against an addition inside keeps both."""
    base: Tree = {"d": ("dir", 0o755, None), "d/f": ("file", 0o644, b"1")}
    renamed: Tree = {"e": ("dir", 0o755, None), "e/f": ("file", 0o644, b"1")}
    edited: Tree = {"d": ("dir", 0o755, None), "d/f": ("file", 0o644, b"2")}
    assert trees_model.merge(base, renamed, edited)[1] == {"d/f"}
    chmodded: Tree = {"d": ("dir", 0o700, None), "d/f": ("file", 0o644, b"1")}
    added = {**base, "d/g": ("file", 0o644, b"3")}
    result, conflicts = trees_model.merge(base, chmodded, added)
    assert not conflicts and result == {**chmodded, "d/g": ("file", 0o644, b"3")}
