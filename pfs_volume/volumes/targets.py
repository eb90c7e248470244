"""What a Docker volume name means: its target, a branch's working copy or a commit's
read-only snapshot (the table in DESIGN.md, "The volume name"), and making it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from pfs_volume.errors import Conflict, NotFound
from pfs_volume.meta import BranchRecord, CommitRecord
from pfs_volume.names import DEFAULT_BRANCH, Ref, VolumeName, parse_volume_name
from pfs_volume.repos import RepoService

PARSED_NAMES = 65536
"""How many parsed names are kept (a name's parse never changes): List parses every
remembered volume name on every call."""


@dataclass(frozen=True)
class Target:
    """What a volume name resolves to right now.

    Exactly one of ``branch`` (writable working copy) and ``commit`` (read-only snapshot)
    is set. ``repo_exists``/``branch_exists`` say what a mount would have to create;
    ``start`` is the commit a new branch starts at.
    """

    repo: str
    branch: str | None = None
    commit: str | None = None
    head: str | None = None
    start: str | None = None
    repo_exists: bool = True
    branch_exists: bool = True

    @property
    def writable(self) -> bool:
        """A branch working copy is writable; a commit never is."""
        return self.branch is not None


class TargetReads(Protocol):
    """What resolving a name reads of the commit graph: ``RepoService`` itself, or a view
    of it that reads each thing once for many names (``pfs_volume.volumes.listing``)."""

    def repo_exists(self, name: str) -> bool: ...
    def find_branch(self, repo: str, name: str) -> BranchRecord | None: ...
    def resolve_commit(self, repo: str, ref: Ref) -> CommitRecord: ...
    def require_data(self, commit: CommitRecord) -> CommitRecord: ...
    def branch_path(self, repo: str, branch: str) -> Path: ...
    def commit_path(self, repo: str, commit_id: str) -> Path: ...
    def is_working_copy(self, repo: str, branch: str) -> bool: ...
    def snapshot_exists(self, repo: str, commit_id: str) -> bool: ...


class VolumeTargets:
    """Volume names resolved against the commit graph.

    Args:
        repos: the commit graph. prefix: the driver's name prefix, e.g. ``"pfs"``.
        reads: where resolving reads the graph (default: ``repos``); ``materialise``
            always goes to ``repos``.
    """

    def __init__(self, repos: RepoService, prefix: str, reads: TargetReads | None = None) -> None:
        self.repos = repos
        self.prefix = prefix
        self.reads: TargetReads = reads if reads is not None else repos

    def parse(self, name: str) -> VolumeName:
        """Parse a Docker volume name with this driver's prefix. Raises InvalidName."""
        return _parse(name, self.prefix)

    def resolve(self, name: str) -> Target:
        """What ``name`` means now, without creating anything.

        Raises:
            InvalidName: a malformed name or an ambiguous commit prefix.
            NotFound: a ref that names no branch or commit.
            Conflict: ``repo/branch@REF`` where the branch exists at another commit.
        """
        return self.resolve_parsed(self.parse(name))

    def resolve_parsed(self, parsed: VolumeName) -> Target:
        """``resolve`` of a name parsed already."""
        repo = parsed.repo
        repo_exists = self.reads.repo_exists(repo)
        ref = parsed.ref
        if ref is None or (
            parsed.branch is None
            and ref.plain
            and (
                ref.base == DEFAULT_BRANCH
                or (repo_exists and self.reads.find_branch(repo, ref.base) is not None)
            )
        ):
            branch = parsed.branch or (ref.base if ref is not None else DEFAULT_BRANCH)
            return self._branch_target(repo, branch, repo_exists, start=None)
        if not repo_exists:
            raise NotFound(
                f"there is no repo {repo!r}, so it has no commit {ref.base!r}; "
                f"mount {self.prefix}/{repo} to create it"
            )
        commit = self.reads.require_data(self.reads.resolve_commit(repo, ref))
        if parsed.branch is None:
            return Target(repo=repo, commit=commit.id, head=commit.id)
        existing = self.reads.find_branch(repo, parsed.branch)
        if existing is not None and existing.head != commit.id:
            raise Conflict(
                f"branch {repo}/{parsed.branch} exists with head {existing.head}, not "
                f"{commit.id}; mount {self.prefix}/{repo}/{parsed.branch} to use it as it is"
            )
        return self._branch_target(repo, parsed.branch, True, start=commit.id)

    def _branch_target(
        self, repo: str, branch: str, repo_exists: bool, start: str | None
    ) -> Target:
        existing = self.reads.find_branch(repo, branch) if repo_exists else None
        if existing is not None:
            return Target(repo=repo, branch=branch, head=existing.head)
        if start is None and repo_exists:
            master = self.reads.find_branch(repo, DEFAULT_BRANCH)
            start = master.head if master is not None else None
        return Target(
            repo=repo,
            branch=branch,
            head=start,
            start=start,
            repo_exists=repo_exists,
            branch_exists=False,
        )

    def path_of(self, target: Target) -> Path:
        """Where the target lives in the pool."""
        if target.branch is not None:
            return self.reads.branch_path(target.repo, target.branch)
        assert target.commit is not None
        return self.reads.commit_path(target.repo, target.commit)

    def materialise(self, target: Target) -> Path:
        """Create the repo, branch and working copy a target needs; return its path."""
        if target.branch is None:
            assert target.commit is not None
            return self.repos.local_commit(target.repo, target.commit)
        self.repos.ensure_repo(target.repo)
        self.repos.ensure_branch(target.repo, target.branch, target.start)
        return self.repos.working_copy(target.repo, target.branch)

    def existing_path(self, target: Target) -> str:
        """The target's path when it exists in the pool now, else ""."""
        if target.branch is not None:
            exists = self.reads.is_working_copy(target.repo, target.branch)
        else:
            assert target.commit is not None
            exists = self.reads.snapshot_exists(target.repo, target.commit)
        return str(self.path_of(target)) if exists else ""


@lru_cache(maxsize=PARSED_NAMES)
def _parse(name: str, prefix: str) -> VolumeName:
    return parse_volume_name(name, prefix)
