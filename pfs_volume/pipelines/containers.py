"""The Docker side of a job: one container per datum try, watched to its end, its
output drained into the datum's log file, and what a job leaves on the engine removed.

pfs never pulls an image: containers are created (``containers.create`` never pulls;
``containers.run`` would) and a missing image fails the datum with the engine named.
A container is watched in ``POLL`` second slices so that a datum timeout, the job
timeout, or the job's ``stop`` event ends it promptly. Its output is written to its log
file while it runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
from docker.types import DriverConfig
from docker.types import Mount as DockerMount

from pfs_volume.pipelines.datum_folder import DATUM_FOLDER, datum_environment
from pfs_volume.pipelines.datums import Datum
from pfs_volume.pipelines.jobs import JobRecord
from pfs_volume.pipelines.spec import PipelineSpec
from pfs_volume.pipelines.watch import JobWatch

log = logging.getLogger(__name__)

JOB_LABEL = "pfs.job"
PIPELINE_LABEL = "pfs.pipeline"
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
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


class Containers:
    """The Docker engine that runs a node's datums.

    Args:
        docker: makes the ``docker.DockerClient`` of the engine (called on first use:
            the daemon starts without a Docker engine).
        driver: this daemon's volume driver name (the prefix of pfs volume names).
        engine: the engine's address as the user knows it (``--docker-host``,
            DOCKER_HOST or the default socket), for errors that send them to it.
    """

    def __init__(self, docker: Callable[[], Any], driver: str, engine: str = "") -> None:
        self._make_docker = docker
        self._docker: Any = None
        self.driver = driver
        self.engine = engine or os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE

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

    def volume_name(self, repo: str, commit: str) -> str:
        """The pfs volume of an input commit."""
        return f"{self.driver}/{repo}@{commit}"

    def run_try(
        self,
        spec: PipelineSpec,
        job: JobRecord,
        datum: Datum,
        commits: Mapping[str, str],
        scratch: Path,
        folder: Path,
        log_path: Path,
        watch: JobWatch,
        attempt: int,
    ) -> tuple[int | None, str | None]:
        """Run one try of a datum; its exit code and, when it failed, why.

        Args:
            commits: input name -> the commit id mounted for it.
            scratch: the try's ``/pfs/out`` (an empty subvolume).
            folder: the datum's ``/pfs/datum`` folder.
            log_path: the datum's log file (the container's output is appended).
            watch: ends the try when the job must end.
            attempt: the try's number, from 1 (``PFS_DATUM_TRY``).
        """
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
        self, spec: PipelineSpec, container: Any, watch: JobWatch
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

    def forget_volumes(self, spec: PipelineSpec, job: JobRecord) -> None:
        """Remove the Docker volumes of a job's inputs (their data stays: these are
        commits); one still in use by another job stays.

        Only names the engine lists for this driver (legacy or managed plugin) are
        removed: removing (or getting)
        a name the engine does not know makes dockerd ask every volume plugin it has
        ever seen, about 15 s for each whose socket is dead. A listed name is removed
        through the driver the engine recorded for it, asking no other plugin."""
        by_name = {i.name: i for i in spec.inputs}
        wanted = {
            self.volume_name(by_name[name].repo, ref.split("@", 1)[1])
            for name, ref in job.inputs.items()
            if name in by_name
        }
        # A managed plugin's volumes are listed under its reference (``pfs:latest``), a
        # legacy plugin's under its bare name; Docker matches either value.
        drivers = [self.driver, f"{self.driver}:latest"]
        try:
            listed = self.docker.api.volumes(filters={"driver": drivers}).get("Volumes") or []
        except Exception as exc:  # the docker SDK raises its own kinds
            log.debug("job=%s volumes not listed: %s", job.id, exc)
            return
        for name in sorted(wanted & {v.get("Name") for v in listed}):
            try:
                self.docker.api.remove_volume(name)
            except Exception as exc:
                log.debug("job=%s volume %s kept: %s", job.id, name, exc)

    def cleanup(self, job_ids: Iterable[str]) -> int:
        """Remove containers left by jobs a crash interrupted; how many were removed."""
        wanted = set(job_ids)
        removed = 0
        for container in self.docker.containers.list(all=True, filters={"label": JOB_LABEL}):
            if container.labels.get(JOB_LABEL) in wanted:
                container.remove(force=True)
                removed += 1
        return removed


def _append(path: Path, text: str) -> None:
    with open(path, "ab") as out:
        out.write(text.encode("utf-8", "replace"))
