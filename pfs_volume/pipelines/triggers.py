"""The trigger pass's decision for one pipeline: the newest input set consistent by
provenance, and whether it, the spec or a reprocess request calls for a new job."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from pfs_volume.errors import Conflict
from pfs_volume.meta import MetadataStore, rfc3339, utcnow
from pfs_volume.pipelines.consistency import Provenance, resolve
from pfs_volume.pipelines.documents import PipelineDocument
from pfs_volume.pipelines.jobs import JobRecord, JobStore, new_job_id
from pfs_volume.pipelines.reasons import REPROCESSED, retried
from pfs_volume.pipelines.spec import PipelineSpec, fingerprint

log = logging.getLogger(__name__)


class Triggers:
    """Queues a pipeline's next job when its inputs moved.

    Args:
        store: the metadata store (branch heads and commit records).
        jobs: the job records.
        notify: called when a job's state changed here (a queued job superseded).
    """

    def __init__(self, store: MetadataStore, jobs: JobStore, notify: Callable[[], None]) -> None:
        self.store = store
        self.jobs = jobs
        self._notify = notify
        self.provenance = Provenance(store.get_commit, reads=self._reads)
        self.waiting: dict[str, str] = {}
        """Pipeline -> why its inputs cannot be used yet."""

    def queue_if_moved(self, document: PipelineDocument) -> None:
        """Queue a job of the pipeline when its consistent input set, its spec or a
        reprocess request differs from its latest job's (see the module's docstring)."""
        spec = document.spec
        inputs = self.input_set(spec)
        if inputs is None:
            return
        latest = self.jobs.latest(spec.name, after=document.epoch)
        if latest is not None and latest.state == "queued" and latest.inputs == inputs:
            if latest.id > document.reprocess_after:
                return  # it runs with the spec as it is when it starts
            # Queued before a reprocess: the job queued below runs every datum instead.
            try:  # not _finish: it would save over a stop or delete that killed it
                latest = self.jobs.save(
                    replace(latest, state="killed", error=REPROCESSED, finished=rfc3339(utcnow()))
                )
            except Conflict:
                return  # it started or was killed meanwhile; the next pass looks again
            self._notify()
        # The latest job decides: on other inputs or with another spec, run anew. A job
        # that failed on its own stays failed (``pfs job rerun`` retries it); one the
        # daemon's stop or the pipeline's stop interrupted runs again.
        if (
            latest is None
            or latest.inputs != inputs
            or latest.fingerprint != fingerprint(spec)
            or latest.id < document.reprocess_after
            or retried(latest)
            or self._output_moved(latest, spec)
        ):
            self.jobs.add(
                JobRecord(
                    id=new_job_id(),
                    pipeline=spec.name,
                    inputs=inputs,
                    fingerprint=fingerprint(spec),
                    branches={i.name: i.branch for i in spec.inputs},
                )
            )

    def _reads(self, job_id: str) -> list[tuple[str, str]]:
        """``(REPO@ID, branch)`` for each input commit a job read, with its branch."""
        job = self.jobs.get(job_id)
        if job is None:
            return []
        return [
            (ref, job.branches[name]) for name, ref in job.inputs.items() if name in job.branches
        ]

    def _output_moved(self, latest: JobRecord, spec: PipelineSpec) -> bool:
        """Whether the latest job succeeded into another output branch than the spec's
        (``pipeline update`` changed only the output): the new one must get the output
        of these inputs too."""
        if latest.state != "success" or latest.output is None:
            return False
        repo, _, commit = latest.output.partition("@")
        if repo != spec.output.repo:
            return True
        record = self.provenance.record(repo, commit)
        return record is not None and record.branch != spec.output.branch

    def input_set(self, spec: PipelineSpec) -> dict[str, str] | None:
        """The newest input set consistent by provenance, as input name -> ``REPO@ID``;
        None while an input has no commit or upstream pipelines must catch up (the
        reason is kept in ``waiting``)."""
        heads: dict[str, tuple[str, str]] = {}
        for item in spec.inputs:
            branch = self.store.get_branch(item.repo, item.branch)
            if branch is None or branch.head is None:
                self.waiting[spec.name] = (
                    f"input {item.name}: {item.repo}/{item.branch} has no commit yet"
                )
                return None
            heads[item.name] = (item.repo, branch.head)
        found = resolve(heads, self.provenance, {i.name: i.branch for i in spec.inputs})
        if found.inputs is None:
            if self.waiting.get(spec.name) != found.waiting:
                log.info("pipeline=%s waits: %s", spec.name, found.waiting)
            self.waiting[spec.name] = found.waiting or ""
            return None
        self.waiting.pop(spec.name, None)
        return {name: f"{repo}@{commit}" for name, (repo, commit) in found.inputs.items()}
