"""Running one job: datums in containers, their outputs combined into one commit.

For each datum the runner starts a container (docker SDK) with every input commit
mounted read-only as the pfs volume ``DRIVER/REPO@COMMIT`` at ``/pfs/in/<input>``, and
a fresh writable subvolume of its own at ``/pfs/out``. ``PFS_DATUM`` tells the command
which paths are its datum (Docker 20.10 cannot mount a volume's sub-path). A datum's
output is kept read-only under ``<pool>/pipelines/<pipeline>/datums/<datum>/<job>`` so a
later job whose datum did not change reuses it instead of running it again.

When every datum succeeded, their outputs are combined into the output branch's working
copy (a path written by two datums fails the job) and committed with the job's
provenance. A job that fails changes nothing on its output branch.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from docker.types import DriverConfig
from docker.types import Mount as DockerMount

from pfs_volume.errors import Conflict, NotFound, PfsError, StorageError
from pfs_volume.meta import CommitRecord
from pfs_volume.names import Ref
from pfs_volume.pipelines.datums import Datum, datums, dirty_datums
from pfs_volume.pipelines.jobs import DatumResult, JobRecord
from pfs_volume.pipelines.spec import PipelineSpec, fingerprint
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

JOB_LABEL = "pfs.job"
PIPELINE_LABEL = "pfs.pipeline"
CP_BATCH = 500
"""Datum outputs one ``cp`` combines (well inside the kernel's argument limit)."""
DATUM_TIMEOUT = 24 * 3600
"""Seconds a datum's container may run."""
_COLLECTING = threading.Lock()
"""One collection of datum outputs at a time (after a job, and ``pfs gc``)."""


class DatumFailed(PfsError):
    """A datum's container exited non-zero, or could not run."""

    status = 500
    code = "datum_failed"


class JobKilled(PfsError):
    """The job was stopped from outside (pipeline stopped or deleted, daemon stopping):
    its containers are removed and nothing is committed."""

    status = 409
    code = "job_killed"


class JobRunner:
    """Runs jobs on this node.

    Args:
        repos: the commit graph (inputs are read and outputs committed through it).
        docker: makes the ``docker.DockerClient`` of the engine that runs the containers
            (called on first use: the daemon starts without a Docker engine).
        driver: this daemon's volume driver name (the prefix of pfs volume names).
    """

    def __init__(self, repos: RepoService, docker: Callable[[], Any], driver: str) -> None:
        self.repos = repos
        self._make_docker = docker
        self._docker: Any = None
        self.driver = driver
        self.root = repos.pool.root / "pipelines"
        self.root.mkdir(exist_ok=True)

    @property
    def docker(self) -> Any:
        """The Docker client, made on first use."""
        if self._docker is None:
            self._docker = self._make_docker()
        return self._docker

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
            DatumFailed: a datum failed (the results so far are in the exception's args).
            JobKilled: ``stop`` was set before the output was committed.
            Conflict: the output branch is mounted or holds uncommitted changes.
        """
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
        with ThreadPoolExecutor(max_workers=spec.parallelism) as pool:
            for result in pool.map(lambda d: self._run_datum(spec, job, d, commits, logs), to_run):
                results[result.id] = result
        ordered = [results[d.id] for d in planned]
        failed = [r for r in ordered if r.state == "failure"]
        if failed:
            raise DatumFailed(
                f"{len(failed)} of {len(ordered)} datum(s) failed: "
                + ", ".join(f"{_label(r)} (exit {r.exit_code})" for r in failed[:5])
                + "; pfs job logs "
                + job.id,
                ordered,
            )
        made = self._combine(spec, job, ordered)
        return ordered, made

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
        return self.datum_output(spec.name, result.id, result.job)

    def datum_output(self, pipeline: str, datum_id: str, job_id: str) -> Path:
        """Where the output of datum ``datum_id`` made by job ``job_id`` is kept."""
        return self.root / pipeline / "datums" / datum_id / job_id

    def collect_outputs(self, pipeline: str, keep: set[tuple[str, str]], live: set[str]) -> int:
        """Delete a pipeline's kept datum outputs that nothing needs; how many went.

        Args:
            pipeline: the pipeline's name.
            keep: ``(datum id, job id)`` of the outputs a later job may reuse.
            live: ids of the pipeline's queued and running jobs: what they make stays.
        """
        folder = self.root / pipeline / "datums"
        freed = 0
        with _COLLECTING:
            if not folder.is_dir():
                return 0
            for datum in _children(folder):
                for made in _children(datum):
                    if (datum.name, made.name) in keep or made.name in live:
                        continue
                    # A container wrote this tree: it is deleted as the subvolume it is,
                    # never walked through a link (``_children`` lists without following).
                    if self.repos.pool.is_subvolume(made):
                        self.repos.pool.delete_subvolume(made)
                    else:
                        self.repos.pool.delete_tree(made)
                    freed += 1
                if not any(datum.iterdir()):
                    datum.rmdir()
        if freed:
            log.info("pipeline=%s %d datum output(s) no job can reuse deleted", pipeline, freed)
        return freed

    def drop_pipeline(self, pipeline: str) -> None:
        """Delete everything a pipeline kept here: datum outputs, job scratch and its
        jobs' logs."""
        folder = self.root / pipeline
        with _COLLECTING:
            if not folder.is_dir() or folder.is_symlink():
                return
            self.repos.pool.delete_tree(folder)
            log.info("pipeline=%s its datum outputs, scratch and logs deleted", pipeline)

    def _run_datum(
        self,
        spec: PipelineSpec,
        job: JobRecord,
        datum: Datum,
        commits: Mapping[str, str],
        logs: Path,
    ) -> DatumResult:
        by_name = {i.name: i for i in spec.inputs}
        scratch = self.root / spec.name / "scratch" / job.id / datum.id
        scratch.parent.mkdir(parents=True, exist_ok=True)
        if self.repos.pool.is_subvolume(scratch):
            self.repos.pool.delete_subvolume(scratch)
        self.repos.pool.create_subvolume(scratch)
        paths = dict(datum.parts)
        env = dict(spec.transform.env)
        env["PFS_JOB"] = job.id
        env["PFS_DATUM_ID"] = datum.id
        env["PFS_DATUM"] = " ".join(
            f"/pfs/in/{name}/{path}".rstrip("/") for name, path in datum.parts
        )
        for name, path in datum.parts:
            env[f"PFS_DATUM_{_env_name(name)}"] = path
        # Mounts name the driver: a volume without one makes dockerd ask every plugin
        # socket it knows (about 15 s for each that is gone). One per input, even when
        # two inputs are the same commit.
        mounts = [
            DockerMount(
                f"/pfs/in/{name}",
                self.volume_name(by_name[name].repo, commit),
                type="volume",
                read_only=True,
                driver_config=DriverConfig(self.driver),
            )
            for name, commit in commits.items()
        ]
        mounts.append(DockerMount("/pfs/out", str(scratch), type="bind"))
        started = time.monotonic()
        exit_code: int | None = None
        log_path = logs / f"{datum.id}.log"
        container = None
        try:
            container = self.docker.containers.run(
                spec.transform.image,
                command=list(spec.transform.cmd),
                environment=env,
                mounts=mounts,
                network_mode="none",
                detach=True,
                labels={JOB_LABEL: job.id, PIPELINE_LABEL: spec.name},
                mem_limit=spec.resources.memory_bytes,
                nano_cpus=int(spec.resources.cpus * 1e9) if spec.resources.cpus else None,
            )
            exit_code = int(container.wait(timeout=DATUM_TIMEOUT)["StatusCode"])
            log_path.write_bytes(container.logs(stdout=True, stderr=True))
        except Exception as exc:  # the docker SDK raises its own kinds
            log_path.write_text(f"pfs: the datum's container could not run: {exc}\n")
            exit_code = exit_code if exit_code is not None else -1
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception as exc:
                    log.warning("job=%s datum=%s container not removed: %s", job.id, datum.id, exc)
        seconds = time.monotonic() - started
        state = "success" if exit_code == 0 else "failure"
        result = DatumResult(datum.id, paths, state, seconds, exit_code, job.id)
        if state == "success":
            kept = self._output(spec, result)
            kept.parent.mkdir(parents=True, exist_ok=True)
            self.repos.pool.snapshot(scratch, kept, readonly=True)
        self.repos.pool.delete_subvolume(scratch)
        log.info(
            "pipeline=%s job=%s datum=%s %s in %.2f s (exit %s)",
            spec.name,
            job.id,
            datum.id,
            state,
            seconds,
            exit_code,
        )
        return result

    def _combine(
        self, spec: PipelineSpec, job: JobRecord, results: list[DatumResult]
    ) -> CommitRecord | None:
        owners: dict[str, DatumResult] = {}
        clashes = []
        for result in results:
            for path in _files(self._output(spec, result)):
                if path in owners:
                    clashes.append(f"{path} (datums {_label(owners[path])} and {_label(result)})")
                owners.setdefault(path, result)
        if clashes:
            raise DatumFailed(
                f"{len(clashes)} path(s) written by more than one datum: " + "; ".join(clashes[:5]),
                results,
            )
        # The whole output is built aside first and swapped in as the output branch's
        # working copy in one rename, so that branch never holds half an output.
        combined = self.root / spec.name / "scratch" / job.id / "combined"
        combined.parent.mkdir(parents=True, exist_ok=True)
        if self.repos.pool.is_subvolume(combined):
            self.repos.pool.delete_subvolume(combined)
        filled = [self._output(spec, r) for r in results if any(self._output(spec, r).iterdir())]
        # The first datum's output becomes the combined tree by a writable snapshot (O(1));
        # the others are copied in, one cp per batch (a process start costs more than a
        # datum's reflinks).
        if filled:
            self.repos.pool.snapshot(filled[0], combined, readonly=False)
        else:
            self.repos.pool.create_subvolume(combined)
        try:
            sources = [f"{path}/." for path in filled[1:]]
            for start in range(0, len(sources), CP_BATCH):
                subprocess.run(
                    [
                        "cp",
                        "-a",
                        "--reflink=auto",
                        *sources[start : start + CP_BATCH],
                        f"{combined}/",
                    ],
                    check=True,
                    capture_output=True,
                )
        except (OSError, subprocess.CalledProcessError) as exc:
            self.repos.pool.delete_subvolume(combined)
            detail = getattr(exc, "stderr", b"") or b""
            raise StorageError(
                f"combining the datums' outputs failed: {exc} {detail.decode(errors='replace')}"
            ) from exc
        repo, branch = spec.output.repo, spec.output.branch
        self.repos.ensure_repo(repo)
        self.repos.ensure_branch(repo, branch, None)
        with self.repos.branch_lock(repo, branch):
            mounted = [m for m in self.repos.store.list_mounts(repo) if m.branch == branch]
            if mounted:
                self.repos.pool.delete_subvolume(combined)
                raise Conflict(
                    f"the output branch {repo}/{branch} is mounted by {len(mounted)} "
                    "container(s); a pipeline's output branch is written by its jobs only"
                )
            work = self.repos.branch_path(repo, branch)
            # A clean working copy holds only the head and goes; one holding changes no
            # commit holds (a crash's leftover, a write from before the pipeline) is kept
            # under detached/ and logged (invariant 1).
            self.repos.set_aside_working_copy(
                repo, branch, f"replaced by the output of job {job.id} of pipeline {spec.name}"
            )
            work.parent.mkdir(parents=True, exist_ok=True)
            combined.rename(work)
            return self.repos.commit_working_copy(
                repo,
                branch,
                message=f"output of job {job.id} of pipeline {spec.name}",
                origin="pipeline",
                provenance=tuple(sorted(job.inputs.values())),
                job=job.id,
            )

    def volume_name(self, repo: str, commit: str) -> str:
        """The pfs volume of an input commit."""
        return f"{self.driver}/{repo}@{commit}"

    def forget_volumes(self, spec: PipelineSpec, job: JobRecord) -> None:
        """Remove the Docker volumes of a job's inputs (their data stays: these are
        commits); one still in use by another job stays."""
        by_name = {i.name: i for i in spec.inputs}
        for name, ref in job.inputs.items():
            commit = ref.split("@", 1)[1]
            try:
                self.docker.volumes.get(self.volume_name(by_name[name].repo, commit)).remove()
            except Exception as exc:
                log.debug("job=%s volume of %s kept: %s", job.id, ref, exc)

    def drop_scratch(self, pipeline: str, job_id: str) -> None:
        """Delete the scratch outputs of a job a crash interrupted."""
        folder = self.root / pipeline / "scratch" / job_id
        if folder.exists():
            self.repos.pool.delete_tree(folder)

    def cleanup(self, job_ids: Iterable[str]) -> int:
        """Remove containers left by jobs a crash interrupted; how many were removed."""
        wanted = set(job_ids)
        removed = 0
        for container in self.docker.containers.list(all=True, filters={"label": JOB_LABEL}):
            if container.labels.get(JOB_LABEL) in wanted:
                container.remove(force=True)
                removed += 1
        return removed


def _label(result: DatumResult) -> str:
    return ",".join(f"{name}:/{path}" for name, path in sorted(result.paths.items()))


def _env_name(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).upper()


def _depth(glob: str) -> int:
    return len([part for part in glob.split("/") if part])


def _entries(root: Path, depth: int) -> list[str]:
    """Relative paths under ``root`` down to ``depth`` levels (files and folders)."""
    found: list[str] = []
    if depth == 0:
        return found
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        for name in dirs + files:
            found.append(name if rel == "." else f"{rel}/{name}")
        if level + 1 >= depth:
            dirs.clear()
    return sorted(found)


def _children(folder: Path) -> list[Path]:
    """The entries of a folder pfs made, links left out (never followed)."""
    return sorted(p for p in folder.iterdir() if not p.is_symlink())


def _files(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    paths = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            paths.append(os.path.relpath(os.path.join(folder, name), root))
    return paths
