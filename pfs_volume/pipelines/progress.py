"""How far a commit has travelled down the pipelines (``pfs wait REPO@COMMIT``).

A pipeline downstream of the commit's branch is done with the commit once a job whose
inputs include the commit, or a later commit of its branch, has ended (the commit's
changes are in that job's inputs), or once it never can: it is stopped, or a pipeline
upstream of it ended without success on the commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pfs_volume.pipelines.consistency import Provenance
from pfs_volume.pipelines.documents import PipelineDocument
from pfs_volume.pipelines.graph import downstream, upstream_pipelines
from pfs_volume.pipelines.jobs import JobRecord
from pfs_volume.pipelines.reasons import retried

FINAL = ("success", "failure", "killed", "blocked", "stopped", "skipped")
UNSUCCESSFUL = ("failure", "killed", "blocked", "stopped", "skipped")
MAX_WALK = 1000
"""Commits walked back to tell whether a job's input descends from the commit."""


@dataclass(frozen=True)
class PipelineProgress:
    """Where one downstream pipeline is with the commit.

    ``state``: ``success``, ``failure`` or ``killed`` (the job that took the commit in
    ended so), ``queued`` or ``running`` (that job), ``pending`` (no job has taken it in
    yet), ``stopped`` (the pipeline is), ``blocked`` (a pipeline upstream ended without
    success on it), ``skipped`` (the branch was reset past the commit before any job
    took it in).
    """

    pipeline: str
    state: str
    job: str | None = None
    output: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class CommitProgress:
    """Every pipeline downstream of a commit, upstream ones first."""

    commit: str
    pipelines: tuple[PipelineProgress, ...]

    @property
    def done(self) -> bool:
        """True once no pipeline will take the commit in any further."""
        return all(p.state in FINAL for p in self.pipelines)

    @property
    def succeeded(self) -> bool:
        """True when every downstream pipeline took the commit in successfully."""
        return all(p.state == "success" for p in self.pipelines)


def commit_progress(
    repo: str,
    branch: str,
    commit_id: str,
    documents: Iterable[PipelineDocument],
    jobs: Mapping[str, list[JobRecord]],
    provenance: Provenance,
    waiting: Mapping[str, str],
    head: str | None = None,
) -> CommitProgress:
    """Where every pipeline downstream of ``repo@commit_id`` (made on ``branch``) is.

    Args:
        documents: every pipeline.
        jobs: each pipeline's jobs, oldest first.
        provenance: commit closures.
        waiting: why a pipeline's inputs cannot be used yet, by pipeline.
        head: the branch's head now; when it does not descend from the commit (the
            branch was reset past it), a pipeline that never took the commit in never
            will: it is ``skipped``.
    """
    abandoned = head is not None and not _descends(repo, head, commit_id, provenance)
    by_name = {d.spec.name: d for d in documents}
    specs = [d.spec for d in by_name.values()]
    results: dict[str, PipelineProgress] = {}
    for spec in downstream(specs, (repo, branch)):
        document = by_name[spec.name]
        upstream = [results[n] for n in upstream_pipelines(spec, specs) if n in results]
        upstream_bad = [p for p in upstream if p.state in UNSUCCESSFUL]
        if upstream_bad:
            first = upstream_bad[0]
            results[spec.name] = PipelineProgress(
                spec.name, "blocked", detail=f"upstream pipeline {first.pipeline}: {first.state}"
            )
            continue
        taken = [
            j
            for j in jobs.get(spec.name, [])
            if j.id > document.epoch and _takes_in(j, repo, branch, commit_id, provenance)
        ]
        # The first success that took the commit in says it went through, whatever
        # came later (a stop, a failure on a newer commit).
        succeeded = [j for j in taken if j.state == "success"]
        if document.stopped and not succeeded:
            results[spec.name] = PipelineProgress(spec.name, "stopped")
            continue
        # Reset past on its branch, the commit still comes through a pipeline upstream
        # that took it in (its output keeps it).
        gone = abandoned and not upstream
        if not taken and gone:
            results[spec.name] = PipelineProgress(
                spec.name,
                "skipped",
                detail=f"{repo}/{branch} no longer holds the commit (its head is {head})",
            )
            continue
        if not taken:
            results[spec.name] = PipelineProgress(
                spec.name, "pending", detail=waiting.get(spec.name)
            )
            continue
        latest = succeeded[0] if succeeded else taken[-1]
        if retried(latest):  # its inputs run again by themselves: not an end
            results[spec.name] = PipelineProgress(  # unless no longer the branch's
                spec.name, "skipped" if gone else "pending", latest.id, detail=latest.error
            )
            continue
        results[spec.name] = PipelineProgress(
            spec.name, latest.state, latest.id, latest.output, latest.error
        )
    return CommitProgress(f"{repo}@{commit_id}", tuple(results.values()))


def _takes_in(
    job: JobRecord, repo: str, branch: str, commit_id: str, provenance: Provenance
) -> bool:
    """Whether the job's inputs depend on the commit or a later commit of its branch."""
    for name, ref in job.inputs.items():
        source_repo, _, source_id = ref.partition("@")
        seen = provenance.closure(source_repo, source_id, job.branches.get(name)).get(
            (repo, branch)
        )
        if seen is not None and _descends(repo, seen, commit_id, provenance):
            return True
    return False


def _descends(repo: str, commit: str, ancestor: str, provenance: Provenance) -> bool:
    current: str | None = commit
    for _ in range(MAX_WALK):
        if current is None:
            return False
        if current == ancestor:
            return True
        current = provenance.parent(repo, current)
    return False
