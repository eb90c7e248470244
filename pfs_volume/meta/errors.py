"""The errors both metadata backends raise, built in one place so both say the same."""

from __future__ import annotations

from pfs_volume.errors import Conflict, NotFound


def no_repo(repo: str) -> NotFound:
    """There is no repo called ``repo``."""
    return NotFound(f"there is no repo {repo!r}")


def no_branch(repo: str, branch: str) -> NotFound:
    """The repo has no such branch."""
    return NotFound(f"repo {repo!r} has no branch {branch!r}")


def no_commit(repo: str, commit_id: str) -> NotFound:
    """The repo has no such commit."""
    return NotFound(f"repo {repo!r} has no commit {commit_id}")


def repo_exists(repo: str) -> Conflict:
    """The repo name is taken."""
    return Conflict(f"repo {repo!r} exists already")


def repo_being_deleted(repo: str) -> Conflict:
    """The name's repo was deleted and its data is not gone yet (a tombstone)."""
    return Conflict(f"repo {repo!r} is still being deleted")


def branch_exists(repo: str, branch: str) -> Conflict:
    """The branch exists already."""
    return Conflict(f"branch {repo}/{branch} exists already")


def head_moved(repo: str, branch: str, head: str | None, expected: str | None) -> Conflict:
    """A compare-and-swap of the head found ``head`` instead of ``expected``."""
    return Conflict(f"branch {repo}/{branch} moved: its head is {head}, not {expected}")


def document_moved(kind: str, name: str, found: int | None, expected: int | None) -> Conflict:
    """A compare-and-swap of a document found version ``found`` (None: absent) instead of
    ``expected`` (None: absent)."""
    if found is None:
        return Conflict(f"there is no {kind} {name!r} (it was deleted)")
    if expected is None:
        return Conflict(f"{kind} {name!r} exists already")
    return Conflict(f"{kind} {name!r} is at version {found}, not {expected}")
