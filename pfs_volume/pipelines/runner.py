"""Running one job: datums in containers, their outputs combined into one commit.

For each datum the runner starts a container (``containers``) with every input commit
mounted read-only as the pfs volume ``DRIVER/REPO@COMMIT`` at ``/pfs/in/<input>``, a
fresh writable subvolume of its own at ``/pfs/out``, and a read-only folder at
``/pfs/datum`` that says which paths are its datum (``datum_folder``).

A datum's output is kept read-only under ``<pool>/pipelines/<pipeline>/datums/<datum>/<job>``
(``outputs``) so a later job whose datum did not change reuses it instead of running it
again. A datum is tried up to ``datum_tries`` times; the job's ``stop`` event and its
timeout end it promptly (``watch``).

When every datum succeeded, their outputs are combined aside (a path written by two
datums fails the job) and committed through ``RepoService.commit_tree`` with the job's
provenance. A job that fails changes nothing on its output branch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from pfs_volume.branch_uses import owner_of
from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import DatumFailed, JobKilled, JobTimedOut, NotFound, OutputMoved, PfsError
from pfs_volume.meta import CommitRecord, rfc3339, utcnow
from pfs_volume.names import Ref
from pfs_volume.pipelines.containers import Containers
from pfs_volume.pipelines.datum_folder import drop_datum_folder, write_datum_folder
from pfs_volume.pipelines.datums import Datum, datums, dirty_datums
from pfs_volume.pipelines.joblogs import write_result
from pfs_volume.pipelines.jobs import DatumResult, JobRecord
from pfs_volume.pipelines.outputs import DatumOutputs, datum_label
from pfs_volume.pipelines.spec import PipelineSpec, fingerprint
from pfs_volume.pipelines.watch import JobWatch
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)


class JobRunner:
    """Runs jobs on this node.

    Args:
        repos: the commit graph (inputs are read and outputs committed through it).
        pool: the btrfs pool (datum scratch, kept outputs and job logs live in its
            ``pipelines`` folder).
        docker: makes the ``docker.DockerClient`` of the engine that runs the containers
            (called on first use: the daemon starts without a Docker engine).
        driver: this daemon's volume driver name (the prefix of pfs volume names).
        engine: the engine's address as the user knows it (``--docker-host``,
            DOCKER_HOST or the default socket), for errors that send them to it.
    """

    def __init__(
        self,
        repos: RepoService,
        pool: BtrfsPool,
        docker: Callable[[], Any],
        driver: str,
        engine: str = "",
    ) -> None:
        self.repos = repos
        self.containers = Containers(docker, driver, engine)
        self.outputs = DatumOutputs(pool, pool.root / "pipelines")
        self.root = self.outputs.root
        self._watches: dict[str, JobWatch] = {}

    @property
    def docker(self) -> Any:
        """The Docker client, made on first use."""
        return self.containers.docker

    def image_missing(self, image: str) -> str:
        """Why ``image`` cannot run a datum: it is not on the engine."""
        return self.containers.image_missing(image)

    def image_warnings(self, spec: PipelineSpec) -> list[str]:
        """What a user should hear about a spec before its first job (see
        ``Containers.image_warnings``)."""
        return self.containers.image_warnings(spec)

    def logs_dir(self, pipeline: str, job_id: str) -> Path:
        """Where a job's per-datum container output is kept."""
        return self.root / pipeline / "jobs" / job_id

    def run(
        self,
        spec: PipelineSpec,
        job: JobRecord,
        previous: JobRecord | None,
        stop: threading.Event | None = None,
    ) -> tuple[list[DatumResult], CommitRecord | None]:
        """Run ``job``'s datums (reusing ``previous``'s where nothing changed), then
        commit the combined output. Returns the datum results and the output commit
        (None when the output did not change).

        ``stop``, once set, kills the job: its containers are removed and nothing is
        committed (raises JobKilled).

        Raises:
            DatumFailed: a datum failed (the results so far are its ``results``).
            JobTimedOut: the job ran past ``spec.job_timeout``; nothing was committed.
            JobKilled: ``stop`` was set before the output was committed.
            Conflict: the output branch is mounted or holds uncommitted changes.
        """
        watch = JobWatch(stop, spec.job_timeout)
        self._watches[job.id] = watch
        try:
            return self._run(spec, job, previous, watch)
        except (JobKilled, JobTimedOut):
            self._halt(spec, job)
            raise
        finally:
            self._watches.pop(job.id, None)
            # Whatever the end (a storage error, a full pool): its containers are gone,
            # and what is left under its scratch is no output of anything.
            try:
                self.drop_scratch(spec.name, job.id)
            except PfsError as exc:
                log.warning("job=%s scratch not removed: %s", job.id, exc)

    def _run(
        self,
        spec: PipelineSpec,
        job: JobRecord,
        previous: JobRecord | None,
        watch: JobWatch,
    ) -> tuple[list[DatumResult], CommitRecord | None]:
        commits = {name: ref.split("@", 1)[1] for name, ref in job.inputs.items()}
        by_name = {i.name: i for i in spec.inputs}
        entries = {
            name: _entries(
                self.repos.local_commit(by_name[name].repo, commit), _depth(by_name[name].glob)
            )
            for name, commit in commits.items()
        }
        planned = datums(spec, entries)
        dirty = self._dirty(spec, job, previous, planned)
        reusable = {d.id: d for d in (previous.datums if previous else ()) if d.state != "failure"}
        results: dict[str, DatumResult] = {}
        to_run: list[Datum] = []
        for datum in planned:
            earlier = reusable.get(datum.id)
            if earlier is not None and datum not in dirty and self._output(spec, earlier).is_dir():
                results[datum.id] = replace(earlier, state="reused")
            else:
                to_run.append(datum)
        logs = self.logs_dir(spec.name, job.id)
        logs.mkdir(parents=True, exist_ok=True)
        for reused in results.values():  # shown while the job runs; kept if it crashes
            write_result(logs, reused)
        with ThreadPoolExecutor(max_workers=spec.parallelism) as pool:
            for result in pool.map(
                lambda d: self._run_datum(spec, job, d, commits, logs, watch), to_run
            ):
                results[result.id] = result
        ordered = [results[d.id] for d in planned if d.id in results]
        watch.raise_if_ended(job, ordered)
        failed = [r for r in ordered if r.state == "failure"]
        if failed:
            raise DatumFailed(
                f"{len(failed)} of {len(ordered)} datum(s) failed: "
                + ", ".join(
                    f"{datum_label(r)} ({r.error or f'exit {r.exit_code}'})" for r in failed[:5]
                )
                + "; pfs job logs "
                + job.id,
                ordered,
            )
        made = self._commit(spec, job, ordered)
        return ordered, made

    def _halt(self, spec: PipelineSpec, job: JobRecord) -> None:
        """Remove every container and the scratch of a killed or timed-out job."""
        try:
            self.cleanup([job.id])
        except Exception as exc:  # the docker SDK raises its own kinds
            log.warning("job=%s containers not removed: %s", job.id, exc)
        try:
            self.drop_scratch(spec.name, job.id)
        except PfsError as exc:
            log.warning("job=%s scratch not removed: %s", job.id, exc)

    def _dirty(
        self,
        spec: PipelineSpec,
        job: JobRecord,
        previous: JobRecord | None,
        planned: list[Datum],
    ) -> set[Datum]:
        """Datums whose input paths changed since ``previous`` (all, without one)."""
        if previous is None or fingerprint(spec) != previous.fingerprint:
            return set(planned)
        changed: dict[str, set[str]] = {}
        for name, ref in job.inputs.items():
            before = previous.inputs.get(name)
            repo, commit = ref.split("@", 1)
            if before is None:
                changed[name] = {""}
                continue
            old_repo, old_commit = before.split("@", 1)
            if old_repo != repo:
                changed[name] = {""}
                continue
            if old_commit == commit:
                changed[name] = set()
                continue
            try:
                _old, _new, found = self.repos.diff(repo, Ref(commit), Ref(old_commit))
            except NotFound:
                # The earlier input commit was pruned (or its repo made anew): nothing
                # to compare with, so every datum of this input runs again.
                changed[name] = {""}
                continue
            paths: set[str] = set()
            for change in found:
                paths.add(change.path)
                if change.old_path:
                    paths.add(change.old_path)
            changed[name] = paths
        return dirty_datums(planned, {name: paths for name, paths in changed.items() if paths})

    def _output(self, spec: PipelineSpec, result: DatumResult) -> Path:
        return self.outputs.of(spec.name, result)

    def datum_output(self, pipeline: str, datum_id: str, job_id: str) -> Path:
        """Where the output of datum ``datum_id`` made by job ``job_id`` is kept."""
        return self.outputs.kept(pipeline, datum_id, job_id)

    def collect_outputs(self, pipeline: str, keep: set[tuple[str, str]], live: set[str]) -> int:
        """Delete a pipeline's kept datum outputs that nothing needs; how many went (see
        ``DatumOutputs.collect``)."""
        return self.outputs.collect(pipeline, keep, live)

    def drop_pipeline(self, pipeline: str) -> None:
        """Delete everything a pipeline kept here: datum outputs, job scratch and its
        jobs' logs."""
        self.outputs.drop_pipeline(pipeline)

    def _run_datum(
        self,
        spec: PipelineSpec,
        job: JobRecord,
        datum: Datum,
        commits: Mapping[str, str],
        logs: Path,
        watch: JobWatch,
    ) -> DatumResult:
        paths = dict(datum.parts)
        scratch = self.outputs.scratch(spec.name, job.id) / datum.id
        scratch.parent.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{datum.id}.log"
        started_at = rfc3339(utcnow())
        started = time.monotonic()
        exit_code: int | None = None
        error: str | None = "not run: the job ended first"
        tries = 0
        folder = write_datum_folder(self.root, spec.name, job.id, datum)
        try:
            while tries < spec.datum_tries and not watch.ended():
                tries += 1
                if tries > 1:
                    with open(log_path, "ab") as out:
                        out.write(f"pfs: try {tries} of {spec.datum_tries}\n".encode())
                self.outputs.fresh(scratch)
                exit_code, error = self.containers.run_try(
                    spec, job, datum, commits, scratch, folder, log_path, watch, tries
                )
                if exit_code == 0 or error == self.image_missing(spec.transform.image):
                    break  # another try cannot find the image either
        finally:
            drop_datum_folder(self.root, spec.name, job.id, datum.id)
        seconds = time.monotonic() - started
        state = "success" if exit_code == 0 and error is None else "failure"
        result = DatumResult(
            datum.id,
            paths,
            state,
            seconds,
            exit_code,
            job.id,
            tries=tries,
            error=error,
            started=started_at,
        )
        if state == "success":
            self.outputs.keep(spec.name, result, scratch)
        self.outputs.drop_subvolume(scratch)
        write_result(logs, result)
        log.info(
            "pipeline=%s job=%s datum=%s %s in %.2f s, %d tries (%s)",
            spec.name,
            job.id,
            datum.id,
            state,
            seconds,
            tries,
            error or f"exit {exit_code}",
        )
        return result

    def _commit(
        self, spec: PipelineSpec, job: JobRecord, results: list[DatumResult]
    ) -> CommitRecord | None:
        """Combine the datums' outputs aside and commit them as the job's output."""
        combined = self.outputs.combine(spec.name, job.id, results)
        repo, branch = spec.output.repo, spec.output.branch

        def still_ours() -> None:
            self._raise_if_ended(job, results)
            owner = owner_of(self.repos.users(repo, branch), repo, branch)
            if owner != spec.name:
                # Updated to another output (or deleted) while the job ran: the branch is
                # no longer this pipeline's, and may be another's.
                raise OutputMoved(
                    f"{repo}/{branch} is no longer the output of pipeline {spec.name}"
                    + (f" but of pipeline {owner}" if owner else "")
                    + "; nothing was committed (a new job writes the pipeline's output now)"
                )

        return self.repos.commit_tree(
            repo,
            branch,
            combined,
            message=f"output of job {job.id} of pipeline {spec.name}",
            origin="pipeline",
            provenance=tuple(sorted(job.inputs.values())),
            job=job.id,
            check=still_ours,
        )

    def _raise_if_ended(self, job: JobRecord, results: list[DatumResult]) -> None:
        """Right before the commit (under the output branch's lock): a job killed or
        timed out by now commits nothing."""
        watch = self._watches.get(job.id)
        if watch is not None and watch.ended():
            watch.raise_if_ended(job, results)

    def volume_name(self, repo: str, commit: str) -> str:
        """The pfs volume of an input commit."""
        return self.containers.volume_name(repo, commit)

    def forget_volumes(self, spec: PipelineSpec, job: JobRecord) -> None:
        """Remove the Docker volumes of a job's inputs (see
        ``Containers.forget_volumes``)."""
        self.containers.forget_volumes(spec, job)

    def drop_scratch(self, pipeline: str, job_id: str) -> None:
        """Delete the scratch outputs of a job a crash interrupted."""
        self.outputs.drop_scratch(pipeline, job_id)

    def cleanup(self, job_ids: Iterable[str]) -> int:
        """Remove containers left by jobs a crash interrupted; how many were removed."""
        return self.containers.cleanup(job_ids)


def _depth(glob: str) -> int:
    return len([part for part in glob.split("/") if part])


def _entries(root: Path, depth: int) -> list[str]:
    """Relative paths under ``root`` down to ``depth`` levels (files and folders). The
    input commit's tree came from a container: no link is followed, not even to ask
    what it points at (a link to a hung mount on the host would hold the job)."""
    found: list[str] = []
    if depth == 0:
        return found
    todo = [("", 1)]
    while todo:
        rel, level = todo.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                found.append(path)
                if level < depth and entry.is_dir(follow_symlinks=False):
                    todo.append((path, level + 1))
    return sorted(found)
