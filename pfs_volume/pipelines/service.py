"""Pipelines: their specs, the triggers that start jobs, and provenance.

A pipeline is stored as a document of kind ``pipeline`` holding its spec and the input
commits its last job ran on. A trigger loop compares each pipeline's input branch heads
with those and queues a job when they differ; jobs of one pipeline run one at a time,
oldest first. A pipeline whose input is another pipeline's output branch therefore runs
after it: the upstream job's commit is what moves that branch (a DAG, in order).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from pfs_volume.branch_uses import BranchUse, owner_of
from pfs_volume.errors import Conflict, NotFound, PfsError
from pfs_volume.meta import CommitRecord, rfc3339, utcnow
from pfs_volume.pipelines.jobs import JobRecord, JobStore, new_job_id
from pfs_volume.pipelines.runner import DatumFailed, JobRunner
from pfs_volume.pipelines.spec import PipelineSpec, fingerprint, spec_to_json, validate
from pfs_volume.pipelines.uses import KIND
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

INTERRUPTED = "the pfs daemon stopped during the job; it runs again"
TRIGGER_INTERVAL = 1.0
"""Seconds between looks at the input branches."""


class PipelineService:
    """Pipelines of this pfs: create, update, delete, trigger and run their jobs.

    Args:
        repos: the commit graph.
        runner: runs one job (containers, datums, the output commit).
        owns: whether this node runs a pipeline's jobs (in a cluster, one live node per
            pipeline, picked by rendezvous hashing; on a single host, always).
    """

    def __init__(
        self,
        repos: RepoService,
        runner: JobRunner,
        owns: Callable[[str], bool] = lambda _name: True,
    ) -> None:
        self.repos = repos
        self.owns = owns
        self.node_id = repos.coordinator.node_id
        self.store = repos.store
        self.jobs = JobStore(repos.store)
        self.runner = runner
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # specs

    def create(self, raw: Any) -> PipelineSpec:
        """Validate and store a pipeline; its first job starts on the current inputs.

        Raises:
            InvalidRequest: every problem of the spec. Conflict: the name is taken, or
                the output branch holds changes no commit holds.
            InUse: a container has the output branch mounted.
        """
        spec = validate(raw)
        self._check_inputs(spec)
        self._check_graph(spec)
        body = {"spec": spec_to_json(spec), "epoch": new_job_id()}
        with self._taking_output(spec):
            self.store.put_document(KIND, spec.name, json.dumps(body), None)
        self.repos.ensure_repo(spec.output.repo)
        self.repos.ensure_branch(spec.output.repo, spec.output.branch, None)
        log.info("pipeline=%s created", spec.name)
        self._wake.set()
        return spec

    def update(self, raw: Any) -> PipelineSpec:
        """Replace a pipeline's spec; the next job runs with it (all datums, if the
        transform or the inputs changed). Raises InvalidRequest, NotFound."""
        spec = validate(raw)
        self._check_inputs(spec)
        self._check_graph(spec)
        body, version = self._document(spec.name)
        body["spec"] = spec_to_json(spec)
        with self._taking_output(spec):
            self.store.put_document(KIND, spec.name, json.dumps(body), version)
        self.repos.ensure_repo(spec.output.repo)
        self.repos.ensure_branch(spec.output.repo, spec.output.branch, None)
        self._wake.set()
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
            exists = self.repos.repo_exists(repo) and self.repos.find_branch(repo, branch)
            if exists and owner_of(self.repos.users(repo, branch), repo, branch) != spec.name:
                self.repos.refuse_if_busy(repo, branch, f"make pipeline {spec.name}'s output of")
            yield

    def _check_inputs(self, spec: PipelineSpec) -> None:
        missing = sorted({i.repo for i in spec.inputs if not self.repos.repo_exists(i.repo)})
        if missing:
            raise NotFound(
                f"pipeline {spec.name}: no repo {', '.join(map(repr, missing))} to read; "
                "create the input repos first"
            )

    def _check_graph(self, spec: PipelineSpec) -> None:
        """Refuse an output branch another pipeline writes, and a cycle of pipelines
        (each would trigger the next for ever)."""
        others = [s for s in self.list_specs() if s.name != spec.name]
        out = (spec.output.repo, spec.output.branch)
        for other in others:
            if (other.output.repo, other.output.branch) == out:
                raise Conflict(
                    f"pipeline {other.name} writes {out[0]}/{out[1]} already; give "
                    f"{spec.name} another output"
                )
        feeds: dict[tuple[str, str], list[PipelineSpec]] = {}
        for item in [*others, spec]:
            for source in item.inputs:
                feeds.setdefault((source.repo, source.branch), []).append(item)
        seen: set[str] = set()
        todo = list(feeds.get(out, []))
        while todo:
            item = todo.pop()
            if item.name == spec.name:
                raise Conflict(
                    f"pipeline {spec.name} would feed itself through other pipelines (a "
                    "cycle): pipelines must form a DAG"
                )
            if item.name not in seen:
                seen.add(item.name)
                todo.extend(feeds.get((item.output.repo, item.output.branch), []))

    def get(self, name: str) -> PipelineSpec:
        """A pipeline's spec. Raises NotFound."""
        body, _ = self._document(name)
        return validate(body["spec"])

    def _document(self, name: str) -> tuple[dict[str, Any], int]:
        found = self.store.get_document(KIND, name)
        if found is None:
            raise NotFound(f"there is no pipeline {name!r}")
        return json.loads(found[0]), found[1]

    def list_specs(self) -> list[PipelineSpec]:
        """Every pipeline, by name."""
        return [
            validate(json.loads(body)["spec"]) for _n, body, _v in self.store.list_documents(KIND)
        ]

    def delete(self, name: str) -> None:
        """Drop a pipeline and what it kept in the pool (datum outputs, scratch, its
        jobs' logs); its jobs' records and its output commits stay. NotFound."""
        self._document(name)
        self.store.delete_document(KIND, name)
        log.info("pipeline=%s deleted", name)
        self._drop(name)

    def _drop(self, name: str) -> None:
        """Delete what a deleted pipeline kept in the pool; what cannot go now (a job
        of it still ending) goes at the next ``collect_outputs``."""
        try:
            self.runner.drop_pipeline(name)
        except (PfsError, OSError) as exc:
            log.warning("pipeline=%s what it kept was not all deleted (gc retries): %s", name, exc)

    def delete_repo(self, name: str, force: bool = False) -> list[str]:
        """Delete a repo; with ``force``, first every pipeline that reads or writes it
        (their jobs are stopped, their kept outputs deleted). Returns the pipelines
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
        if self.store.get_document(KIND, pipeline) is None and not live:
            # Deleted (here or on another node) while a job of it was ending, or by a
            # crash before its folder went: nothing of it runs again.
            freed = self.runner.collect_outputs(pipeline, set(), set())
            self._drop(pipeline)
            return freed
        return self.runner.collect_outputs(pipeline, keep, live)

    # jobs

    def rerun(self, job_id: str) -> JobRecord:
        """Queue a new job on the same input commits as ``job_id``. Raises NotFound."""
        old = self.job(job_id)
        spec = self.get(old.pipeline)
        job = self.jobs.add(
            JobRecord(
                id=new_job_id(),
                pipeline=spec.name,
                inputs=old.inputs,
                fingerprint=fingerprint(spec),
            )
        )
        self._wake.set()
        return job

    def job(self, job_id: str) -> JobRecord:
        """A job. Raises NotFound."""
        found = self.jobs.get(job_id)
        if found is None:
            raise NotFound(f"there is no job {job_id!r}")
        return found

    def logs(self, job_id: str) -> dict[str, str]:
        """A job's container output, by datum id."""
        job = self.job(job_id)
        folder = self.runner.logs_dir(job.pipeline, job.id)
        if not folder.is_dir() and self.store.get_document(KIND, job.pipeline) is None:
            raise NotFound(
                f"the logs of job {job_id} were deleted with its pipeline {job.pipeline}; "
                "its record stays (pfs job inspect)"
            )
        if job.node and job.node != self.node_id and not folder.is_dir():
            raise NotFound(
                f"job {job_id} ran on node {job.node}: its logs are kept there "
                "(pfs --api pointing at that node shows them)"
            )
        return (
            {path.stem: path.read_text(errors="replace") for path in sorted(folder.glob("*.log"))}
            if folder.is_dir()
            else {}
        )

    # provenance

    def provenance(self, repo: str, commit_id: str) -> tuple[list[str], list[str]]:
        """What produced a commit (every input commit, transitively) and what it fed
        (every output commit downstream, transitively), each as ``REPO@ID``. A merge
        commit holds what its merged-in heads held, so their provenance is its too."""
        start = self.repos.get_commit(repo, commit_id)
        upstream: list[str] = []
        seen: set[str] = set()
        todo = list(start.provenance)
        merged, visited = list(start.merge_parents), set()
        while merged:  # merged-in heads, and the heads merged into those
            parent = self.repos.get_commit(repo, merged.pop())
            if parent.id not in visited:
                visited.add(parent.id)
                todo.extend(parent.provenance)
                merged.extend(parent.merge_parents)
        while todo:
            ref = todo.pop(0)
            if ref in seen:
                continue
            seen.add(ref)
            upstream.append(ref)
            r, c = ref.split("@", 1)
            found = self.store.get_commit(r, c)
            if found is not None:
                todo.extend(found.provenance)
        fed: dict[str, list[str]] = {}
        for record in self.store.list_repos():
            for commit in self.store.list_commits(record.name):
                for source in commit.provenance:
                    fed.setdefault(source, []).append(f"{record.name}@{commit.id}")
        downstream: list[str] = []
        todo = [f"{repo}@{commit_id}"]
        seen = set()
        while todo:
            ref = todo.pop(0)
            for child in fed.get(ref, []):
                if child not in seen:
                    seen.add(child)
                    downstream.append(child)
                    todo.append(child)
        return upstream, downstream

    # the trigger loop

    def start(self) -> None:
        """Settle jobs a crash interrupted, then watch inputs and run jobs."""
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="pfs-pipelines", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (a job under way is marked killed at the next start)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def recover(self) -> list[str]:
        """Mark jobs a crash left running as failed and remove their containers; the
        trigger then runs their inputs again. Their ids."""
        interrupted = [
            j for j in self.jobs.list() if j.state == "running" and j.node in ("", self.node_id)
        ]
        for job in interrupted:
            self.jobs.save(
                replace(
                    job,
                    state="failure",
                    finished=rfc3339(utcnow()),
                    error=INTERRUPTED,
                )
            )
        if interrupted:
            try:
                removed = self.runner.cleanup(j.id for j in interrupted)
                log.info("removed %d container(s) of interrupted jobs", removed)
            except Exception as exc:
                log.warning("containers of interrupted jobs not removed: %s", exc)
        for job in interrupted:  # after the containers: nothing writes there any more
            try:
                self.runner.drop_scratch(job.pipeline, job.id)
            except PfsError as exc:
                log.warning("job=%s scratch outputs not removed: %s", job.id, exc)
        return [j.id for j in interrupted]

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(TRIGGER_INTERVAL)
            self._wake.clear()
            try:
                self.tick()
            except PfsError as exc:
                log.warning("pipelines: trigger pass failed (retried): %s", exc)
            except Exception:
                log.exception("pipelines: trigger pass crashed (retried)")

    def tick(self, run: Callable[[JobRecord], None] | None = None) -> None:
        """One pass: queue a job for each pipeline whose inputs moved, then run queued
        jobs oldest first."""
        for spec in self.list_specs():
            if not self.owns(spec.name):
                continue
            heads = self._heads(spec)
            if heads is None:
                continue
            body, _ = self._document(spec.name)
            epoch = str(body.get("epoch", ""))
            jobs = [j for j in self.jobs.list(spec.name) if j.id > epoch]
            latest = jobs[-1] if jobs else None
            # The latest job decides: on other inputs or with another spec, run anew. A
            # job that failed on its own stays failed (``pfs job rerun`` retries it);
            # one the daemon's stop interrupted runs again.
            if (
                latest is None
                or latest.inputs != heads
                or latest.fingerprint != fingerprint(spec)
                or (latest.state == "failure" and latest.error == INTERRUPTED)
            ):
                self.jobs.add(
                    JobRecord(
                        id=new_job_id(),
                        pipeline=spec.name,
                        inputs=heads,
                        fingerprint=fingerprint(spec),
                    )
                )
        for job in self.jobs.list():
            if job.state == "queued" and self.owns(job.pipeline):
                (run or self.run_job)(job)

    def _heads(self, spec: PipelineSpec) -> dict[str, str] | None:
        heads = {}
        for item in spec.inputs:
            branch = self.store.get_branch(item.repo, item.branch)
            if branch is None or branch.head is None:
                return None
            heads[item.name] = f"{item.repo}@{branch.head}"
        return heads

    def run_job(self, job: JobRecord) -> JobRecord:
        """Run one queued job to its end; the job as it ended."""
        try:
            spec = self.get(job.pipeline)
        except NotFound:
            return self.jobs.save(replace(job, state="killed", error="the pipeline was deleted"))
        try:
            job = self.jobs.save(
                replace(job, state="running", started=rfc3339(utcnow()), node=self.node_id)
            )
        except Conflict:
            return job  # another pass took it
        previous = next(
            (
                j
                for j in reversed(self.jobs.list(spec.name))
                if j.state == "success" and j.id != job.id
            ),
            None,
        )
        if set(job.inputs) != {i.name for i in spec.inputs}:
            return self._end(
                job,
                "failure",
                "the pipeline's inputs changed since this job was queued "
                f"({', '.join(sorted(job.inputs))}); a new job runs on the new ones",
                [],
                None,
            )
        try:
            results, made = self.runner.run(spec, job, previous)
        except DatumFailed as exc:
            partial = list(exc.args[1]) if len(exc.args) > 1 else []
            ended = self._end(job, "failure", str(exc.args[0]), partial, None)
        except PfsError as exc:
            ended = self._end(job, "failure", str(exc), [], None)
        except Exception as exc:
            log.exception("pipeline=%s job=%s crashed", job.pipeline, job.id)
            ended = self._end(job, "failure", f"internal error in pfs: {exc!r}", [], None)
        else:
            ended = self._end(job, "success", None, results, made)
        self.runner.forget_volumes(spec, job)  # after the job's end is recorded
        try:
            self._collect(spec.name)
        except PfsError as exc:
            log.warning("pipeline=%s datum outputs not collected: %s", spec.name, exc)
        return ended

    def _end(
        self,
        job: JobRecord,
        state: str,
        error: str | None,
        results: list[Any],
        made: CommitRecord | None,
    ) -> JobRecord:
        output = f"{made.repo}@{made.id}" if made is not None else None
        ended = self.jobs.save(
            replace(
                job,
                state=state,
                error=error,
                finished=rfc3339(utcnow()),
                datums=tuple(results),
                output=output,
            )
        )
        log.info(
            "pipeline=%s job=%s %s%s", job.pipeline, job.id, state, f": {error}" if error else ""
        )
        return ended
