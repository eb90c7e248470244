"""What a Docker volume name means: its target, a branch's working copy or a commit's
read-only snapshot (the table in DESIGN.md, "The volume name"), and making it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pfs_volume.errors import Conflict, NotFound
from pfs_volume.names import DEFAULT_BRANCH, VolumeName, parse_volume_name
from pfs_volume.repos import RepoService


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


class VolumeTargets:
    """Volume names resolved against the commit graph.

    Args:
        repos: the commit graph. prefix: the driver's name prefix, e.g. ``"pfs"``.
    """

    def __init__(self, repos: RepoService, prefix: str) -> None:
        self.repos = repos
        self.prefix = prefix

    def parse(self, name: str) -> VolumeName:
        """Parse a Docker volume name with this driver's prefix. Raises InvalidName."""
        return parse_volume_name(name, self.prefix)

    def resolve(self, name: str) -> Target:
        """What ``name`` means now, without creating anything.

        Raises:
            InvalidName: a malformed name or an ambiguous commit prefix.
            NotFound: a ref that names no branch or commit.
            Conflict: ``repo/branch@REF`` where the branch exists at another commit.
        """
        parsed = self.parse(name)
        repo = parsed.repo
        repo_exists = self.repos.repo_exists(repo)
        ref = parsed.ref
        if ref is None or (
            parsed.branch is None
            and ref.plain
            and (
                ref.base == DEFAULT_BRANCH
                or (repo_exists and self.repos.find_branch(repo, ref.base) is not None)
            )
        ):
            branch = parsed.branch or (ref.base if ref is not None else DEFAULT_BRANCH)
            return self._branch_target(repo, branch, repo_exists, start=None)
        if not repo_exists:
            raise NotFound(
                f"there is no repo {repo!r}, so it has no commit {ref.base!r}; "
                f"mount {self.prefix}/{repo} to create it"
            )
        commit = self.repos.require_data(self.repos.resolve_commit(repo, ref))
        if parsed.branch is None:
            return Target(repo=repo, commit=commit.id, head=commit.id)
        existing = self.repos.find_branch(repo, parsed.branch)
        if existing is not None and existing.head != commit.id:
            raise Conflict(
                f"branch {repo}/{parsed.branch} exists with head {existing.head}, not "
                f"{commit.id}; mount {self.prefix}/{repo}/{parsed.branch} to use it as it is"
            )
        return self._branch_target(repo, parsed.branch, True, start=commit.id)

    def _branch_target(
        self, repo: str, branch: str, repo_exists: bool, start: str | None
    ) -> Target:
        existing = self.repos.find_branch(repo, branch) if repo_exists else None
        if existing is not None:
            return Target(repo=repo, branch=branch, head=existing.head)
        if start is None and repo_exists:
            master = self.repos.find_branch(repo, DEFAULT_BRANCH)
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
            return self.repos.branch_path(target.repo, target.branch)
        assert target.commit is not None
        return self.repos.commit_path(target.repo, target.commit)

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
            exists = self.repos.is_working_copy(target.repo, target.branch)
        else:
            assert target.commit is not None
            exists = self.repos.snapshot_exists(target.repo, target.commit)
        return str(self.path_of(target)) if exists else ""
