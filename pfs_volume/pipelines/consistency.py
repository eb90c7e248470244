"""Input sets consistent by provenance (pure logic over commit records).

A job must never mix a new upstream commit with an old one. In a diamond (pipeline B
reads A; C reads A and B), when A moves to a2 while B's head was still made from a1,
C's input set {A@a2, B@b1} is inconsistent: B@b1 says A was a1. The rule, as
Pachyderm's commit sets have it: for every branch that two inputs depend on (an input
depends on its own commit and, transitively, on every commit its provenance lists),
they depend on the same commit.

When the heads disagree, the set is moved back, not held: each input that depends on a
newer commit of the disputed branch walks back its own branch (first parents) to the
newest commit that depends on the oldest disputed one or an older one. C then runs on
{A@a1, B@b1} at once, and again on {A@a2, B@b2} when B catches up. Only when no input
can walk back far enough (within ``MAX_WALK`` commits) does the set wait.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pfs_volume.meta import CommitRecord

Branch = tuple[str, str]
"""``(repo, branch)`` as a commit record names it."""

Lookup = Callable[[str, str], CommitRecord | None]
"""``(repo, commit id)`` -> the commit's record, or None if there is none."""

Reads = Callable[[str], list[tuple[str, str]]]
"""A job id -> ``(REPO@ID, branch)`` for each input commit it read, with the branch it
read it from (empty when unknown)."""

MAX_WALK = 200
"""Commits an input walks back through to find one that agrees."""
MAX_ROUNDS = 64
"""Disputes settled per resolution before the set is called waiting."""


@dataclass(frozen=True)
class Resolution:
    """A consistent input set, or why there is none yet.

    Attributes:
        inputs: input name -> ``(repo, commit id)``; None when waiting.
        waiting: why the inputs cannot be used yet (None when ``inputs`` is set).
    """

    inputs: dict[str, tuple[str, str]] | None
    waiting: str | None = None


class Provenance:
    """Closures of commits' provenance, memoised (commit records never change).

    Args:
        lookup: reads a commit record.
        keep: how many closures to remember before starting afresh.
    """

    def __init__(self, lookup: Lookup, keep: int = 10_000, reads: Reads | None = None) -> None:
        self.lookup = lookup
        self.keep = keep
        self.reads = reads
        self._memo: dict[tuple[str, str, str | None], dict[Branch, str]] = {}
        self._records: dict[tuple[str, str], CommitRecord] = {}

    def record(self, repo: str, commit_id: str) -> CommitRecord | None:
        """A commit's record (remembered once found: records never change)."""
        key = (repo, commit_id)
        found = self._records.get(key)
        if found is None:
            found = self.lookup(repo, commit_id)
            if found is not None:
                if len(self._records) >= self.keep:
                    self._records.clear()
                self._records[key] = found
        return found

    def closure(self, repo: str, commit_id: str, branch: str | None = None) -> dict[Branch, str]:
        """Every branch a commit depends on, with the commit it depends on there: its
        own branch (itself) and, transitively, its provenance. (A branch reached by two
        paths at two commits keeps the first found; jobs on consistent sets never make
        such a commit.)

        A commit counts as one of the branch it was read from (``branch``; for a
        provenance commit, the branch its job read it from), not of the branch it was
        made on: ``dev`` made from ``master`` points at master's commits, and a
        fast-forward merge puts dev's commits on master."""
        key = (repo, commit_id, branch)
        found = self._memo.get(key)
        if found is not None:
            return found
        record = self.record(repo, commit_id)
        result: dict[Branch, str] = {}
        if record is None:
            return result  # not remembered: the record may yet arrive (a replica)
        result[(repo, branch or record.branch)] = commit_id
        read: dict[str, list[str]] = {}
        if record.job and self.reads is not None:
            for ref, read_from in self.reads(record.job):
                read.setdefault(ref, []).append(read_from)
        for ref in record.provenance:
            source_repo, _, source_id = ref.partition("@")
            branches: list[str | None] = [*read.get(ref, [])] or [None]
            for through in branches:
                for dependency, commit in self.closure(source_repo, source_id, through).items():
                    result.setdefault(dependency, commit)
        if len(self._memo) >= self.keep:
            self._memo.clear()
        self._memo[key] = result
        return result

    def created(self, repo: str, commit_id: str) -> tuple[str, str]:
        """A sort key for age: creation time, then id."""
        record = self.record(repo, commit_id)
        return (record.created.isoformat() if record is not None else "", commit_id)

    def parent(self, repo: str, commit_id: str) -> str | None:
        """A commit's first parent."""
        record = self.record(repo, commit_id)
        return None if record is None else record.parent


def resolve(
    heads: Mapping[str, tuple[str, str]],
    provenance: Provenance,
    branches: Mapping[str, str] | None = None,
) -> Resolution:
    """The newest consistent input set at or before the given heads.

    Each dispute (a branch two inputs depend on at different commits) is settled at the
    oldest of the disputed commits: every input that depends on a newer one walks back
    to its newest commit depending on that one or an older one. Disputes only ever move
    back, so this ends; provenance grows along a pipeline's output branch, so the set it
    ends on is the newest consistent one within ``MAX_WALK`` commits.

    Args:
        heads: input name -> ``(repo, head commit id)``.
        provenance: closures of the commits involved.
        branches: input name -> the branch it reads. An input's own commit counts as
            a commit of that branch, not of the branch it was made on: a branch made
            from another (``branch create dev --from master``) points at the other's
            commits, and reading both is no dispute.
    Returns:
        The consistent set (the heads themselves when they agree), or why none was found.
    """
    chosen = dict(heads)
    read = dict(branches or {})

    def closure_of(name: str, ref: tuple[str, str]) -> dict[Branch, str]:
        return provenance.closure(ref[0], ref[1], read.get(name))

    for _ in range(MAX_ROUNDS):
        closures = {name: closure_of(name, ref) for name, ref in chosen.items()}
        disputed = _first_dispute(closures)
        if disputed is None:
            return Resolution(chosen)
        branch, commits = disputed
        oldest = min(provenance.created(branch[0], c) for c in commits)
        for name in sorted(chosen):
            seen = closures[name].get(branch)
            if seen is None or provenance.created(branch[0], seen) <= oldest:
                continue
            earlier = _walk_back(chosen[name], branch, oldest, provenance, name, closure_of)
            if earlier is None:
                repo, commit = chosen[name]
                return Resolution(
                    None,
                    f"input {name} ({repo}@{commit}) depends on {branch[0]}/{branch[1]} at "
                    f"{seen}, another input at {oldest[1]}, and no recent commit of {repo} "
                    "agrees: waiting for the pipelines upstream to catch up",
                )
            chosen[name] = earlier
    return Resolution(None, "the inputs' provenance did not settle; waiting for upstream")


def _first_dispute(closures: Mapping[str, Mapping[Branch, str]]) -> tuple[Branch, set[str]] | None:
    seen: dict[Branch, set[str]] = {}
    for closure in closures.values():
        for branch, commit in closure.items():
            seen.setdefault(branch, set()).add(commit)
    disputes = sorted((b, c) for b, c in seen.items() if len(c) > 1)
    return disputes[0] if disputes else None


def _walk_back(
    start: tuple[str, str],
    branch: Branch,
    bound: tuple[str, str],
    provenance: Provenance,
    name: str,
    closure: Callable[[str, tuple[str, str]], Mapping[Branch, str]],
) -> tuple[str, str] | None:
    """The newest commit at or before ``start`` (first parents) that depends on
    ``branch`` at a commit no newer than ``bound`` (a ``created`` key)."""
    repo, commit = start
    current: str | None = commit
    for _ in range(MAX_WALK):
        if current is None:
            return None
        seen = closure(name, (repo, current)).get(branch)
        if seen is not None and provenance.created(branch[0], seen) <= bound:
            return repo, current
        current = provenance.parent(repo, current)
    return None
