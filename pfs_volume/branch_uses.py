"""Which pipelines read or write a branch: the seam through which the services below
pipelines learn that an output branch belongs to its pipeline.

The answer is derived from the stored pipeline documents (``pfs_volume.pipelines.uses``)
each time it is asked, so no second record can drift from them. The daemon hands that
lookup to ``RepoService``; without one, no branch has users.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pfs_volume.errors import Conflict

INPUT = "input"
OUTPUT = "output"


@dataclass(frozen=True)
class BranchUse:
    """One pipeline's use of a branch: it reads it (``input``) or writes it (``output``)."""

    pipeline: str
    repo: str
    branch: str
    role: str


UsesLookup = Callable[[str], Sequence[BranchUse]]
"""A repo's name -> every use pipelines make of its branches."""


def no_uses(_repo: str) -> Sequence[BranchUse]:
    """The lookup of a pfs without pipelines."""
    return ()


def owner_of(uses: Sequence[BranchUse], repo: str, branch: str) -> str | None:
    """The pipeline whose output ``repo/branch`` is, or None."""
    return next(
        (u.pipeline for u in uses if u.role == OUTPUT and (u.repo, u.branch) == (repo, branch)),
        None,
    )


def owned_refusal(pipeline: str, repo: str, branch: str, verb: str) -> Conflict:
    """The error of a write from outside a pipeline to its output branch."""
    return Conflict(
        f"cannot {verb} branch {repo}/{branch}: it is the output of pipeline {pipeline}, "
        f"and only its jobs write there; read it at a commit (pfs/{repo}@COMMIT), or "
        f"branch from it (pfs branch create {repo}/NEW --from {branch})"
    )


def in_use_refusal(what: str, uses: Sequence[BranchUse]) -> Conflict:
    """The error of deleting a repo or branch that pipelines read or write."""
    names = sorted({u.pipeline for u in uses})
    roles = "; ".join(
        f"pipeline {name} {_doing(u for u in uses if u.pipeline == name)}" for name in names
    )
    return Conflict(
        f"cannot delete {what}: {roles}; delete those pipelines first "
        f"(pfs pipeline delete {' '.join(names)}), or give --force to delete them too"
    )


def _doing(uses: Iterable[BranchUse]) -> str:
    """``reads A/x and writes A/y``: what one pipeline does with the branches."""
    listed = list(uses)
    said = []
    for role, verb in ((INPUT, "reads"), (OUTPUT, "writes")):
        branches = sorted({f"{u.repo}/{u.branch}" for u in listed if u.role == role})
        if branches:
            said.append(f"{verb} {', '.join(branches)}")
    return " and ".join(said)
