"""Pipelines: their specs, the commands on them and their jobs, and provenance.

The trigger loop and the job slots are the ``Scheduler``'s, the blocking waits are in
``waits`` and a commit's lineage in ``lineage``; this is the front the API calls. Specs
are checked as a whole, against the repos and the other pipelines too, and every problem
is reported at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from pfs_volume.branch_uses import BranchUse, owned_refusal, owner_of
from pfs_volume.config import DEFAULT_MAX_JOBS
from pfs_volume.errors import Conflict, InvalidRequest, NotFound, PfsError
from pfs_volume.meta import MetadataStore
from pfs_volume.pipelines import joblogs
from pfs_volume.pipelines.datum_folder import (
    RESERVED_VARIABLES,
    datum_variable,
    variable_clashes,
)
from pfs_volume.pipelines.documents import PipelineDocument, PipelineDocuments
from pfs_volume.pipelines.graph import writer_problems
from pfs_volume.pipelines.jobs import JobRecord, JobStore, new_job_id
from pfs_volume.pipelines.lineage import lineage
from pfs_volume.pipelines.progress import CommitProgress
from pfs_volume.pipelines.reasons import DELETED, STOPPED
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.scheduler import Scheduler
from pfs_volume.pipelines.spec import PipelineSpec, SpecOutline, fingerprint, validate
from pfs_volume.pipelines.waits import Waits
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)


class PipelineService:
    """Pipelines of this pfs: create, update, stop, start, delete; jobs, waits and
    provenance.

    Args:
        repos: the commit graph.
        store: the metadata store (pipeline documents, jobs, commit records).
        node_id: this node.
        runner: runs one job (containers, datums, the output commit).
        owns: whether this node runs a pipeline's jobs (in a cluster, one live node per
            pipeline, picked by rendezvous hashing; on a single host, always).
        max_jobs: jobs this node runs at once.
    """

    def __init__(
        self,
        repos: RepoService,
        store: MetadataStore,
        node_id: str,
        runner: JobRunner,
        owns: Callable[[str], bool] = lambda _name: True,
        max_jobs: int = DEFAULT_MAX_JOBS,
    ) -> None:
        self.repos = repos
        self.node_id = node_id
        self.store = store
        self.jobs = JobStore(store)
        self.documents = PipelineDocuments(store)
        self.runner = runner
        self.scheduler = Scheduler(store, runner, node_id, owns, max_jobs, after_job=self._collect)
        self.waits = Waits(repos, store, self.documents, self.jobs, self.scheduler, self.job)

    # specs

    def create(self, raw: object) -> PipelineSpec:
        """Validate and store a pipeline; its first job starts on the current inputs.

        Raises:
            InvalidRequest: every problem of the spec (its fields, input repos that do
                not exist, an output another pipeline writes, a cycle).
            Conflict: the name is taken, or the output branch holds changes no commit
                holds.
            InUse: a container has the output branch mounted.
        """
        spec = validate(raw, self._context_problems)
        with self._taking_output(spec):
            self.documents.add(PipelineDocument(spec=spec, epoch=new_job_id()))
        self.repos.ensure_repo(spec.output.repo)
        self.repos.ensure_branch(spec.output.repo, spec.output.branch, None)
        log.info("pipeline=%s created", spec.name)
        self.scheduler.wake()
        return spec

    def update(self, raw: object, reprocess: bool = False, name: str | None = None) -> PipelineSpec:
        """Replace a pipeline's spec; the next job runs with it (every datum, if the
        transform or the inputs changed, or with ``reprocess``).

        Args:
            name: the pipeline meant (the spec must name it too).
        Raises:
            InvalidRequest: every problem of the spec. NotFound: no such pipeline.
        """
        spec = validate(raw, self._context_problems)
        if name is not None and spec.name != name:
            raise InvalidRequest(f"the spec is of pipeline {spec.name!r}, not {name!r}")
        document = self.documents.get(spec.name)
        changed = replace(document, spec=spec)
        if reprocess:
            changed = replace(changed, reprocess_after=new_job_id())
        with self._taking_output(spec):
            self.documents.save(changed)
        self.repos.ensure_repo(spec.output.repo)
        self.repos.ensure_branch(spec.output.repo, spec.output.branch, None)
        log.info("pipeline=%s updated%s", spec.name, " (reprocess)" if reprocess else "")
        self.scheduler.wake()
        return spec

    @contextmanager
    def _taking_output(self, spec: PipelineSpec) -> Iterator[None]:
        """Store a pipeline's document under its output branch's lock, once nothing
        but its jobs can be writing there: a branch mounted for writing, or holding
        changes no commit holds, is refused (the pipeline's first job would otherwise
        take it from under a container, or set those changes aside unasked). Mounts,
        puts and the like check ownership under the same lock, so one of the two waits
        for the other and then sees it."""
        repo, branch = spec.output.repo, spec.output.branch
        with self.repos.branch_lock(repo, branch):
            owner = owner_of(self.repos.users(repo, branch), repo, branch)
            verb = f"make pipeline {spec.name}'s output of"
            if owner is not None and owner != spec.name:  # a create that raced this one
                raise owned_refusal(owner, repo, branch, verb)
            exists = self.repos.repo_exists(repo) and self.repos.find_branch(repo, branch)
            if exists and owner != spec.name:
                self.repos.refuse_if_busy(repo, branch, verb)
            yield

    def _context_problems(self, outline: SpecOutline) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for path, item in outline.reads:
            if not self.repos.repo_exists(item.repo):
                problems.append(
                    (
                        f"{path}.repo",
                        f"there is no repo {item.repo!r} to read; create it first "
                        f"(pfs repo create {item.repo}) or fix the name",
                    )
                )
        seen: set[str] = set()
        clashes = variable_clashes(item.name for _path, item in outline.reads)
        for path, item in outline.reads:
            other = clashes.get(item.name)
            if other is None or datum_variable(item.name) in seen:
                seen.add(datum_variable(item.name))
                continue
            seen.add(datum_variable(item.name))
            whose = "pfs's own" if other in RESERVED_VARIABLES else f"input {other!r}'s too"
            problems.append(
                (
                    f"{path}.name",
                    f"input {item.name!r} would give its datum path in "
                    f"{datum_variable(item.name)}, which is {whose}; give it a distinct "
                    '"name" (the variable upper-cases it, other characters become _)',
                )
            )
        if outline.name is not None:
            reads = [(path, (item.repo, item.branch)) for path, item in outline.reads]
            problems.extend(writer_problems(outline.name, outline.output, reads, self.list_specs()))
        return problems

    def get(self, name: str) -> PipelineSpec:
        """A pipeline's spec. Raises NotFound."""
        return self.documents.get(name).spec

    def document(self, name: str) -> PipelineDocument:
        """A pipeline as stored (spec, stopped). Raises NotFound."""
        return self.documents.get(name)

    def waiting(self, name: str) -> str | None:
        """Why a pipeline's inputs cannot be used yet (None: they can)."""
        return self.scheduler.waiting.get(name)

    def list_specs(self) -> list[PipelineSpec]:
        """Every pipeline, by name."""
        return [d.spec for d in self.documents.list()]

    def stop_pipeline(self, name: str) -> list[str]:
        """Stop a pipeline: its running job is killed (containers removed, nothing
        committed) and no job is queued until it is started. The killed jobs' ids.
        Raises NotFound."""
        self._set_stopped(name, True)
        killed = self.scheduler.kill(name, STOPPED)
        log.info("pipeline=%s stopped; killed jobs: %s", name, killed or "none")
        return killed

    def start_pipeline(self, name: str) -> None:
        """Start a stopped pipeline: its inputs are looked at again. Raises NotFound."""
        self._set_stopped(name, False)
        log.info("pipeline=%s started", name)
        self.scheduler.wake()

    def _set_stopped(self, name: str, stopped: bool) -> None:
        for _ in range(10):
            document = self.documents.get(name)
            if document.stopped == stopped:
                return
            try:
                self.documents.save(replace(document, stopped=stopped))
                return
            except Conflict:
                continue
        raise Conflict(f"pipeline {name} kept changing; try again")

    def delete(self, name: str) -> list[str]:
        """Drop a pipeline, killing its running job first, and what it kept in the pool
        (datum outputs, scratch, its jobs' logs); its jobs' records and its output
        commits stay. The killed jobs' ids. Raises NotFound."""
        self.documents.get(name)
        self.documents.delete(name)
        killed = self.scheduler.kill(name, DELETED)
        log.info("pipeline=%s deleted; killed jobs: %s", name, killed or "none")
        if not self.scheduler.is_running(name):
            self._drop(name)  # else its job drops it once it ended (after_job)
        return killed

    def _drop(self, name: str) -> None:
        """Delete what a deleted pipeline kept in the pool; what cannot go now (a job
        of it still ending) goes at the next ``collect_outputs``."""
        try:
            self.runner.drop_pipeline(name)
        except (PfsError, OSError) as exc:
            log.warning("pipeline=%s what it kept was not all deleted (gc retries): %s", name, exc)

    def delete_repo(self, name: str, force: bool = False) -> list[str]:
        """Delete a repo; with ``force``, first every pipeline that reads or writes it
        (their jobs are killed, their kept outputs deleted). Returns the pipelines
        deleted.

        Raises:
            Conflict: pipelines use it and ``force`` is not given (each named). And what
                ``RepoService.delete_repo`` raises.
        """
        self.repos.get_repo(name)
        gone = self._delete_users(self.repos.users(name), force)
        self.repos.delete_repo(name)
        return gone

    def delete_branch(self, repo: str, branch: str, force: bool = False) -> list[str]:
        """Delete a branch; with ``force``, first every pipeline that reads or writes
        it. Returns the pipelines deleted. Raises as ``delete_repo``."""
        self.repos.get_branch(repo, branch)
        gone = self._delete_users(self.repos.users(repo, branch), force)
        self.repos.delete_branch(repo, branch)
        return gone

    def _delete_users(self, uses: list[BranchUse], force: bool) -> list[str]:
        if not force:
            return []  # the repo service refuses, naming them
        names = sorted({u.pipeline for u in uses})
        for name in names:
            with contextlib.suppress(NotFound):  # deleted meanwhile
                self.delete(name)
        return names

    def collect_outputs(self) -> int:
        """Delete every kept datum output that no queued or running job makes and no
        later job can reuse; how many went. A pipeline's reusable outputs are those its
        latest successful job used (made or reused): only those can be reused, since a
        job reuses its pipeline's latest success."""
        freed = 0
        for name in sorted(p.name for p in self.runner.root.iterdir() if p.is_dir()):
            freed += self._collect(name)
        return freed

    def _collect(self, pipeline: str) -> int:
        jobs = self.jobs.list(pipeline)
        live = {j.id for j in jobs if not j.done}
        latest = next((j for j in reversed(jobs) if j.state == "success"), None)
        keep = {
            (d.id, d.job)
            for d in (latest.datums if latest is not None else ())
            if d.state in ("success", "reused")
        }
        if self.documents.find(pipeline) is None and not live:
            # Deleted (here or on another node) while a job of it was ending, or by a
            # crash before its folder went: nothing of it runs again.
            freed = self.runner.collect_outputs(pipeline, set(), set())
            self._drop(pipeline)
            return freed
        return self.runner.collect_outputs(pipeline, keep, live)

    # jobs

    def rerun(self, job_id: str) -> JobRecord:
        """Queue a new job on the same input commits as ``job_id``.

        Raises:
            NotFound: no such job or pipeline.
            Conflict: a later job of the pipeline succeeded on these or newer inputs
                (rerunning would commit a duplicate, or move the output back to older
                data), or a job on these inputs is queued or running.
        """
        old = self.job(job_id)
        document = self.documents.get(old.pipeline)
        spec = document.spec
        if old.id <= document.epoch:
            raise Conflict(
                f"job {old.id} was a job of an earlier pipeline {spec.name}, deleted since; "
                "the pipeline of this name now is another"
            )
        later = [j for j in self.jobs.list(spec.name) if j.id > old.id and j.id > document.epoch]
        busy = [j for j in [old, *later] if not j.done and j.inputs == old.inputs]
        if busy:
            raise Conflict(
                f"job {busy[-1].id} on the same input commits is {busy[-1].state} already"
            )
        succeeded = [j for j in [old, *later] if j.state == "success"]
        # Refused: a success on newer inputs (a rerun moves the output back), or on the
        # same ones with this spec since the last reprocess request (a duplicate).
        if succeeded and (
            succeeded[-1].inputs != old.inputs
            or (
                succeeded[-1].fingerprint == fingerprint(spec)
                and succeeded[-1].id > document.reprocess_after
            )
        ):
            newer = succeeded[-1]
            what = "the same" if newer.inputs == old.inputs else "newer"
            raise Conflict(
                f"job {newer.id} of pipeline {spec.name} succeeded"
                + ("" if newer.id == old.id else f" after {old.id}")
                + f" on {what} "
                f"input commits; its output {newer.output or '(unchanged)'} is current, and "
                f"rerunning {old.id} would "
                + (
                    "commit the same output again"
                    if what == "the same"
                    else "move the output back to older data"
                )
                + " (pfs pipeline update --reprocess runs every datum again)"
            )
        job = self.jobs.add(
            JobRecord(
                id=new_job_id(),
                pipeline=spec.name,
                inputs=old.inputs,
                fingerprint=fingerprint(spec),
                branches=old.branches,
            )
        )
        self.scheduler.wake()
        return job

    def job(self, job_id: str) -> JobRecord:
        """A job. Raises NotFound."""
        found = self.jobs.get(job_id)
        if found is None:
            raise NotFound(f"there is no job {job_id!r}")
        return found

    def wait_job(self, job_id: str, timeout: float) -> JobRecord:
        """The job once it has ended, or as it is after ``timeout`` seconds (at most
        ``MAX_WAIT``). Raises NotFound, and InvalidRequest for a timeout out of range."""
        return self.waits.job(job_id, timeout)

    def wait_commit(
        self, repo: str, commit_id: str, timeout: float, branch: str | None = None
    ) -> CommitProgress:
        """Where every pipeline downstream of a commit is, once all are done with it or
        after ``timeout`` seconds (see ``Waits.commit``)."""
        return self.waits.commit(repo, commit_id, timeout, branch)

    def logs(self, job_id: str) -> dict[str, str]:
        """A job's container output, by datum id."""
        job = self.job(job_id)
        folder = self.runner.logs_dir(job.pipeline, job.id)
        if not folder.is_dir() and self.documents.find(job.pipeline) is None:
            raise NotFound(
                f"the logs of job {job_id} were deleted with its pipeline {job.pipeline}; "
                "its record stays (pfs job inspect)"
            )
        if job.node and job.node != self.node_id and not folder.is_dir():
            raise NotFound(
                f"job {job_id} ran on node {job.node}: its logs are kept there "
                "(pfs --api pointing at that node shows them)"
            )
        return joblogs.tails(folder)

    # provenance

    def provenance(self, repo: str, commit_id: str) -> tuple[list[str], list[str]]:
        """What produced a commit and what it fed, each as ``REPO@ID`` (see
        ``lineage.lineage``). Raises NotFound."""
        return lineage(self.repos, self.store, repo, commit_id)

    # the trigger loop

    def start(self) -> None:
        """Settle jobs a crash interrupted, then watch inputs and run jobs."""
        self.scheduler.start()

    def stop(self) -> None:
        """Stop watching; jobs under way are killed and run again at the next start."""
        self.scheduler.stop()

    def recover(self) -> list[str]:
        """Settle jobs a crash left running (see ``Scheduler.recover``); their ids."""
        return self.scheduler.recover()

    def settle(self, timeout: float) -> bool:
        """Wait until this node runs no job, clean-up included (see ``Scheduler``)."""
        return self.scheduler.settle(timeout)

    def wake(self) -> None:
        """Look at the inputs now (a commit landed)."""
        self.scheduler.wake()

    def tick(self) -> None:
        """One trigger pass (see ``Scheduler.tick``)."""
        self.scheduler.tick()
