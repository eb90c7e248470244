"""Running one job: datums in containers, their outputs combined into one commit.

For each datum the runner starts a container (docker SDK) with every input commit
mounted read-only as the pfs volume ``DRIVER/REPO@COMMIT`` at ``/pfs/in/<input>``, and
a fresh writable subvolume of its own at ``/pfs/out``, and a read-only folder at
``/pfs/datum`` that says which paths are its datum (Docker 20.10 cannot mount a volume's
sub-path) in forms no file name can break:

* ``/pfs/datum/datum.json``: ``{"id", "job", "pipeline", "inputs": [{"name", "path",
  "path_base64"}]}``, ``path`` absolute in the container. A name that is not UTF-8 is
  written as Python's ``json`` writes it (lone surrogates, ``\\udcXX``, one per byte that
  is not UTF-8); ``path_base64`` always holds the exact bytes.
* ``/pfs/datum/paths``: the absolute paths, each ended by a NUL byte (``xargs -0``).
* ``PFS_DATUM_<INPUT>`` (the input's name upper-cased, other characters ``_``): its one
  absolute path, set only when the path is UTF-8 (Docker's API is JSON); quote it.
  ``PFS_DATUM_ID`` and ``PFS_JOB`` are the datum's and the job's ids, ``PFS_DATUM_TRY``
  the try (1 to the spec's ``datum_tries``).

There is no space-separated list of paths: a name with a space, a newline or a leading
dash would split or turn into an option in the shell loop such a list invites.

A datum's output is kept read-only under ``<pool>/pipelines/<pipeline>/datums/<datum>/<job>``
so a later job whose datum did not change reuses it instead of running it again.

pfs never pulls an image: containers are created (``containers.create`` never pulls;
``containers.run`` would) and a missing image fails the datum with the engine named.
A datum is tried up to ``datum_tries`` times; its container is watched in ``POLL``
second slices so that a datum timeout, the job timeout, or the job's ``stop`` event ends
it promptly. Its output is written to its log file while it runs.

When every datum succeeded, their outputs are combined into the output branch's working
copy (a path written by two datums fails the job) and committed with the job's
provenance. A job that fails changes nothing on its output branch.
"""

from __future__ import annotations

import base64
import json
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

import requests
from docker.types import DriverConfig
from docker.types import Mount as DockerMount

from pfs_volume import safepath
from pfs_volume.branch_uses import owner_of
from pfs_volume.errors import Conflict, NotFound, PfsError, StorageError
from pfs_volume.meta import CommitRecord, rfc3339, utcnow
from pfs_volume.names import Ref
from pfs_volume.pipelines.datums import Datum, datums, dirty_datums
from pfs_volume.pipelines.joblogs import write_result
from pfs_volume.pipelines.jobs import DatumResult, JobRecord
from pfs_volume.pipelines.spec import PipelineSpec, fingerprint
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

JOB_LABEL = "pfs.job"
PIPELINE_LABEL = "pfs.pipeline"
CP_BATCH = 500
"""Datum outputs one ``cp`` combines (well inside the kernel's argument limit)."""
_COLLECTING = threading.Lock()
"""One collection of datum outputs at a time (after a job, and ``pfs gc``)."""
POLL = 0.5
"""Seconds between looks at a running container (stop event, timeouts, exit)."""
MAX_LOG = 64 * 1024**2
"""Bytes a datum's log file keeps (all its tries): the pool holds it until the pipeline
is deleted, and a container printing without end would fill it."""
ENGINE_GONE = 60.0
"""Seconds the engine may fail every wait on a running datum's container (it is down,
or restarting) before the datum fails."""
LOG_DRAIN = 10.0
"""Seconds to wait, once a container ended, for its output to be written down."""
DATUM_FOLDER = "/pfs/datum"
"""Where a datum's container finds which paths are its datum."""
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


class DatumFailed(PfsError):
    """A datum's container exited non-zero, or could not run."""

    status = 500
    code = "datum_failed"


class JobTimedOut(DatumFailed):
    """The job ran past its ``job_timeout``: its containers are removed and nothing is
    committed. Its args are the message and the datum results so far, like DatumFailed."""

    code = "job_timed_out"


class OutputMoved(Conflict):
    """The job's output branch is no longer its pipeline's (an update moved the output,
    or the pipeline was deleted, while it ran): nothing was committed."""


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
        engine: the engine's address as the user knows it (``--docker-host``,
            DOCKER_HOST or the default socket), for errors that send them to it.
    """

    def __init__(
        self,
        repos: RepoService,
        docker: Callable[[], Any],
        driver: str,
        engine: str = "",
    ) -> None:
        self.repos = repos
        self._make_docker = docker
        self._docker: Any = None
        self.driver = driver
        self.engine = engine or os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE
        self._watches: dict[str, _JobWatch] = {}
        self.root = repos.pool.root / "pipelines"
        self.root.mkdir(exist_ok=True)

    @property
    def docker(self) -> Any:
        """The Docker client, made on first use."""
        if self._docker is None:
            self._docker = self._make_docker()
        return self._docker

    def image_missing(self, image: str) -> str:
        """Why ``image`` cannot run a datum: it is not on the engine."""
        return (
            f"the image {image!r} is not on the Docker engine at {self.engine}; pfs never "
            "pulls images: build it there or `docker load` it (or `docker pull` it yourself)"
        )

    def image_warnings(self, spec: PipelineSpec) -> list[str]:
        """What a user should hear about a spec before its first job: the image is
        missing, or the engine cannot be asked. Asks the engine only (no pull)."""
        import docker.errors

        try:
            self.docker.images.get(spec.transform.image)
        except docker.errors.ImageNotFound:
            return [self.image_missing(spec.transform.image) + "; its jobs fail until it is"]
        except Exception as exc:  # the engine is down, or the client cannot be made
            return [
                f"could not ask the Docker engine at {self.engine} for the image "
                f"{spec.transform.image!r}: {exc}"
            ]
        return []

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
            JobTimedOut: the job ran past ``spec.job_timeout``; nothing was committed.
            JobKilled: ``stop`` was set before the output was committed.
            Conflict: the output branch is mounted or holds uncommitted changes.
        """
        watch = _JobWatch(stop, spec.job_timeout)
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
        watch: _JobWatch,
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
                + ", ".join(f"{_label(r)} ({r.error or f'exit {r.exit_code}'})" for r in failed[:5])
                + "; pfs job logs "
                + job.id,
                ordered,
            )
        made = self._combine(spec, job, ordered)
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
        watch: _JobWatch,
    ) -> DatumResult:
        paths = dict(datum.parts)
        scratch = self.root / spec.name / "scratch" / job.id / datum.id
        scratch.parent.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{datum.id}.log"
        started_at = rfc3339(utcnow())
        started = time.monotonic()
        exit_code: int | None = None
        error: str | None = "not run: the job ended first"
        tries = 0
        folder = self._datum_folder(spec, job, datum)
        try:
            while tries < spec.datum_tries and not watch.ended():
                tries += 1
                if tries > 1:
                    with open(log_path, "ab") as out:
                        out.write(f"pfs: try {tries} of {spec.datum_tries}\n".encode())
                if self.repos.pool.is_subvolume(scratch):
                    self.repos.pool.delete_subvolume(scratch)
                self.repos.pool.create_subvolume(scratch)
                exit_code, error = self._try_datum(
                    spec, job, datum, commits, scratch, folder, log_path, watch, tries
                )
                if exit_code == 0 or error == self.image_missing(spec.transform.image):
                    break  # another try cannot find the image either
        finally:
            self._drop_datum_folder(spec, job, datum)
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
            kept = self._output(spec, result)
            kept.parent.mkdir(parents=True, exist_ok=True)
            self.repos.pool.snapshot(scratch, kept, readonly=True)
        if self.repos.pool.is_subvolume(scratch):
            self.repos.pool.delete_subvolume(scratch)
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

    def _try_datum(
        self,
        spec: PipelineSpec,
        job: JobRecord,
        datum: Datum,
        commits: Mapping[str, str],
        scratch: Path,
        folder: Path,
        log_path: Path,
        watch: _JobWatch,
        attempt: int,
    ) -> tuple[int | None, str | None]:
        """Run one try of a datum; its exit code and, when it failed, why."""
        import docker.errors

        by_name = {i.name: i for i in spec.inputs}
        env = dict(spec.transform.env)
        env.update(datum_environment(job.id, datum))
        env["PFS_DATUM_TRY"] = str(attempt)
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
        mounts.append(DockerMount(DATUM_FOLDER, str(folder), type="bind", read_only=True))
        container = None
        drain: threading.Thread | None = None
        try:
            # create + start, never run: the SDK's run pulls an image it does not find.
            container = self.docker.containers.create(
                spec.transform.image,
                command=list(spec.transform.cmd),
                environment=env,
                mounts=mounts,
                network_mode="none",
                labels={JOB_LABEL: job.id, PIPELINE_LABEL: spec.name},
                mem_limit=spec.resources.memory_bytes,
                nano_cpus=int(spec.resources.cpus * 1e9) if spec.resources.cpus else None,
            )
            container.start()
            drain = threading.Thread(
                target=self._drain_logs,
                args=(container.id, log_path),
                name=f"pfs-logs-{datum.id[:12]}",
                daemon=True,
            )
            drain.start()
            return self._wait(spec, container, watch)
        except docker.errors.ImageNotFound:
            error = self.image_missing(spec.transform.image)
            _append(log_path, f"pfs: {error}\n")
            return None, error
        except Exception as exc:  # the docker SDK raises its own kinds
            _append(log_path, f"pfs: the datum's container could not run: {exc}\n")
            return None, f"its container could not run: {exc}"
        finally:
            # The output stream ends when the container does: wait for its last bytes
            # when it exited, but remove a container that still runs (killed, timed out)
            # first, or its stream would hold the job up.
            exited = container is not None and self._exited(container)
            if drain is not None and exited:
                drain.join(LOG_DRAIN)
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception as exc:
                    log.warning("job=%s datum=%s container not removed: %s", job.id, datum.id, exc)
            if drain is not None and not exited:
                drain.join(LOG_DRAIN)

    def _exited(self, container: Any) -> bool:
        try:
            state = self.docker.api.inspect_container(container.id)["State"]
        except Exception:  # gone already
            return False
        return state.get("Status") in ("exited", "dead")

    def _wait(
        self, spec: PipelineSpec, container: Any, watch: _JobWatch
    ) -> tuple[int | None, str | None]:
        """Wait for a container in ``POLL`` slices; its exit code, or why it was ended.

        Each slice is the engine's own wait, which answers the moment the container
        exits (a poll of its state would add up to a slice to every datum)."""
        import docker.errors

        began = time.monotonic()
        unanswered: float | None = None  # since when the engine's wait fails at once
        while True:
            asked = time.monotonic()
            try:
                code = int(container.wait(timeout=POLL)["StatusCode"])
                unanswered = None
            except docker.errors.NotFound:
                return None, "its container was removed while it ran (not by pfs)"
            except requests.exceptions.RequestException as exc:
                code = None  # still running after this slice, or the engine failed
                now = time.monotonic()
                if now - asked < POLL / 2:  # not the slice's timeout: the engine failed
                    unanswered = asked if unanswered is None else unanswered
                    if now - unanswered >= ENGINE_GONE:
                        return None, (
                            f"the Docker engine at {self.engine} failed every wait for "
                            f"{ENGINE_GONE:g} s: {exc}"
                        )
                    time.sleep(POLL - (now - asked))  # never a tight loop on the engine
                else:
                    unanswered = None
            if code is not None:
                state = self.docker.api.inspect_container(container.id)["State"]
                if state.get("OOMKilled"):
                    return code, f"killed for using more than its memory limit (exit {code})"
                return code, None if code == 0 else f"exit {code}"
            if watch.ended():
                return None, "the job ended while it ran"
            if spec.datum_timeout is not None and time.monotonic() - began > spec.datum_timeout:
                container.kill()
                return None, f"timed out after {spec.datum_timeout:g} s"

    def _drain_logs(self, container_id: str, log_path: Path) -> None:
        """Append a container's output to its log file as it comes (until it ends), up to
        ``MAX_LOG`` bytes in the file; the bytes past that are counted, not kept."""
        try:
            stream = self.docker.api.logs(
                container_id, stdout=True, stderr=True, stream=True, follow=True
            )
            with open(log_path, "ab", buffering=0) as out:
                room = max(0, MAX_LOG - os.fstat(out.fileno()).st_size)
                dropped = 0
                try:
                    for chunk in stream:  # read to the end: the container never blocks
                        kept = chunk[:room]
                        if kept:
                            out.write(kept)
                            room -= len(kept)
                        dropped += len(chunk) - len(kept)
                finally:
                    if dropped:
                        out.write(
                            f"\npfs: {dropped} more bytes of output left out (a datum's log "
                            f"keeps at most {MAX_LOG} bytes)\n".encode()
                        )
        except Exception as exc:  # the container went away under the stream
            log.debug("logs of container %s ended: %s", container_id, exc)

    def _datum_folder(self, spec: PipelineSpec, job: JobRecord, datum: Datum) -> Path:
        """Write the datum's ``/pfs/datum`` folder (under the job's scratch) and return it.

        Written by descriptor, never following a link (the daemon is root)."""
        name = f"{datum.id}.datum"
        body = datum_document(spec.name, job.id, datum)
        paths = b"".join(os.fsencode(path) + b"\0" for _name, path in _container_paths(datum))
        with (
            safepath.closing(safepath.open_root(self.root)) as root,
            safepath.closing(safepath.open_folder(root, (spec.name, "scratch", job.id))) as parent,
        ):
            if safepath.lstat_at(parent, name) is not None:
                safepath.remove_tree(parent, name)
            with safepath.closing(safepath.make_folders(parent, (name,))) as folder:
                for file_name, data in (("datum.json", body), ("paths", paths)):
                    fd = os.open(
                        file_name,
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        0o644,
                        dir_fd=folder,
                    )
                    with open(fd, "wb") as out:
                        out.write(data)
        return self.root / spec.name / "scratch" / job.id / name

    def _drop_datum_folder(self, spec: PipelineSpec, job: JobRecord, datum: Datum) -> None:
        try:
            with (
                safepath.closing(safepath.open_root(self.root)) as root,
                safepath.closing(
                    safepath.open_folder(root, (spec.name, "scratch", job.id))
                ) as parent,
            ):
                if safepath.lstat_at(parent, f"{datum.id}.datum") is not None:
                    safepath.remove_tree(parent, f"{datum.id}.datum")
        except (OSError, PfsError) as exc:
            log.warning("job=%s datum=%s datum folder not removed: %s", job.id, datum.id, exc)

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
        return f"{self.driver}/{repo}@{commit}"

    def forget_volumes(self, spec: PipelineSpec, job: JobRecord) -> None:
        """Remove the Docker volumes of a job's inputs (their data stays: these are
        commits); one still in use by another job stays.

        Only names the engine lists for this driver are removed: removing (or getting)
        a name the engine does not know makes dockerd ask every volume plugin it has
        ever seen, about 15 s for each whose socket is dead. A listed name is removed
        through the driver the engine recorded for it, asking no other plugin."""
        by_name = {i.name: i for i in spec.inputs}
        wanted = {
            self.volume_name(by_name[name].repo, ref.split("@", 1)[1])
            for name, ref in job.inputs.items()
            if name in by_name
        }
        try:
            listed = self.docker.api.volumes(filters={"driver": self.driver}).get("Volumes") or []
        except Exception as exc:  # the docker SDK raises its own kinds
            log.debug("job=%s volumes not listed: %s", job.id, exc)
            return
        for name in sorted(wanted & {v.get("Name") for v in listed}):
            try:
                self.docker.api.remove_volume(name)
            except Exception as exc:
                log.debug("job=%s volume %s kept: %s", job.id, name, exc)

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


class _JobWatch:
    """Whether a job must end now: its ``stop`` event was set, or its timeout passed."""

    def __init__(self, stop: threading.Event | None, timeout: float | None) -> None:
        self.stop = stop
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def killed(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def ended(self) -> bool:
        return self.killed() or self.timed_out()

    def raise_if_ended(self, job: JobRecord, results: list[DatumResult]) -> None:
        """Raise JobKilled or JobTimedOut when the job must end."""
        if self.killed():
            raise JobKilled(f"job {job.id} was killed; nothing was committed")
        if self.timed_out():
            raise JobTimedOut(
                f"job timed out after {self.timeout:g} s; nothing was committed", results
            )


def _container_paths(datum: Datum) -> list[tuple[str, str]]:
    """Each input of a datum with its absolute path in the container."""
    return [
        (name, f"/pfs/in/{name}/{path}" if path else f"/pfs/in/{name}")
        for name, path in datum.parts
    ]


def datum_document(pipeline: str, job_id: str, datum: Datum) -> bytes:
    """The ``/pfs/datum/datum.json`` of a datum (see the module's docstring)."""
    inputs = [
        {
            "name": name,
            "path": path,
            "path_base64": base64.b64encode(os.fsencode(path)).decode("ascii"),
        }
        for name, path in _container_paths(datum)
    ]
    document = {"id": datum.id, "job": job_id, "pipeline": pipeline, "inputs": inputs}
    return (json.dumps(document, indent=2) + "\n").encode("ascii")


def datum_environment(job_id: str, datum: Datum) -> dict[str, str]:
    """``PFS_JOB``, ``PFS_DATUM_ID`` and ``PFS_DATUM_<INPUT>`` for each input whose
    path is UTF-8 (Docker's API is JSON: other bytes cannot pass)."""
    env = {"PFS_JOB": job_id, "PFS_DATUM_ID": datum.id}
    paths = _container_paths(datum)
    shared = variable_clashes([name for name, _path in paths])
    for name, path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            continue
        if name not in shared:  # a spec stored before such specs were refused
            env[datum_variable(name)] = path
    return env


RESERVED_VARIABLES = ("PFS_DATUM_ID", "PFS_DATUM_TRY")


def datum_variable(name: str) -> str:
    """The variable holding input ``name``'s datum path: ``PFS_DATUM_<NAME>``."""
    return "PFS_DATUM_" + "".join(ch if ch.isalnum() else "_" for ch in name).upper()


def variable_clashes(names: Iterable[str]) -> dict[str, str]:
    """Input names whose ``PFS_DATUM_<NAME>`` another input's (``a-b``, ``a_b``, ``A.B``)
    or pfs's own (``id``, ``try``) is too, each with that other input's name or the
    variable; the later of two inputs is named."""
    first: dict[str, str] = {}
    found: dict[str, str] = {}
    for name in names:
        variable = datum_variable(name)
        if variable in RESERVED_VARIABLES:
            found[name] = variable
        elif variable in first and first[variable] != name:
            found[name] = first[variable]
            found.setdefault(first[variable], name)
        else:
            first.setdefault(variable, name)
    return found


def _append(path: Path, text: str) -> None:
    with open(path, "ab") as out:
        out.write(text.encode("utf-8", "replace"))


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


def _children(folder: Path) -> list[Path]:
    """The entries of a folder pfs made, links left out (never followed)."""
    return sorted(p for p in folder.iterdir() if not p.is_symlink())


def _files(root: Path) -> list[str]:
    """Every path under a datum's output that is not a folder (files, links, FIFOs...),
    relative to it. A container wrote the tree: no link is followed, not even to ask
    what it points at (a link to a host folder is a path like any other)."""
    if not root.is_dir() or root.is_symlink():
        return []
    paths = []
    todo = [""]
    while todo:
        rel = todo.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    todo.append(path)
                else:
                    paths.append(path)
    return paths
