"""Killing a job through the runner's ``stop`` event: its containers go, its scratch goes,
nothing is committed. The runner runs in this process (the scheduler that sets the event
on ``pipeline stop``/``delete`` is tested with it), on the private engine, with this
process serving the session's driver for the inputs' volumes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from pfs_volume.config import PLUGIN_DIR
from pfs_volume.errors import JobKilled
from pfs_volume.meta import SqliteStore
from pfs_volume.pipelines.jobs import JobRecord, new_job_id
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.spec import PipelineSpec, fingerprint, validate
from pfs_volume.repos import RepoService
from pfs_volume.transport import PLUGIN_CONNECTIONS, UnixSocketServer
from pfs_volume.volumes import VolumeService
from plugin import create_plugin_app
from tests.docker_engine import DockerEngine
from tests.e2e.conftest import forget_docker_state

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

KILL_BOUND = 5.0
"""Seconds from the stop event to the runner's JobKilled (it looks every 0.5 s)."""


@pytest.fixture
def runner(
    repos: RepoService, store: SqliteStore, docker_engine: DockerEngine, driver_name: str
) -> Iterator[JobRunner]:
    volumes = VolumeService(repos, store, prefix=driver_name)
    server = UnixSocketServer(
        create_plugin_app(volumes), PLUGIN_DIR / f"{driver_name}.sock", "plugin", PLUGIN_CONNECTIONS
    )
    server.start()
    try:
        yield JobRunner(
            repos,
            repos.pool,
            lambda: docker.DockerClient(base_url=docker_engine.host),
            driver_name,
            docker_engine.host,
        )
    finally:
        try:
            forget_docker_state(docker_engine, driver_name)
        finally:
            server.stop()


def job_of(repos: RepoService, image: str, script: str) -> tuple[PipelineSpec, JobRecord]:
    repos.ensure_repo("kin")
    repos.ensure_branch("kin", "master", None)
    work = repos.working_copy("kin", "master")
    (work / "a").write_text("1\n")
    (work / "b").write_text("2\n")
    repos.commit_working_copy("kin", "master", "data", "test")
    head = repos.get_branch("kin", "master").head
    spec = validate(
        {
            "name": "killme",
            "input": {"repo": "kin", "glob": "/*"},
            "transform": {"image": image, "cmd": ["sh", "-c", script]},
            "parallelism": 2,
        }
    )
    job = JobRecord(
        id=new_job_id(),
        pipeline="killme",
        inputs={"kin": f"kin@{head}"},
        fingerprint=fingerprint(spec),
    )
    return spec, job


def containers(engine: DockerEngine, job: JobRecord, *flags: str) -> list[str]:
    return engine.docker("ps", "-q", *flags, "--filter", f"label=pfs.job={job.id}").stdout.split()


def test_a_killed_job_removes_its_containers_and_scratch_and_commits_nothing(
    runner: JobRunner, repos: RepoService, image: str, docker_engine: DockerEngine
) -> None:
    spec, job = job_of(repos, image, "echo x > /pfs/out/$PFS_DATUM_ID; sleep 60")
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = runner.run(spec, job, None, stop)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(containers(docker_engine, job)) < 2:
        time.sleep(0.2)
    assert len(containers(docker_engine, job)) == 2, "the datums' containers never ran"
    asked = time.monotonic()
    stop.set()
    thread.join(30)
    took = time.monotonic() - asked
    assert isinstance(outcome.get("error"), JobKilled), outcome
    assert "nothing was committed" in str(outcome["error"])
    assert took < KILL_BOUND, f"the job ended {took:.1f} s after it was killed"
    assert containers(docker_engine, job, "-a") == []
    assert not (runner.root / "killme" / "scratch" / job.id).exists()
    branch = repos.find_branch("killme", "master")
    assert branch is None or branch.head is None


def test_a_job_killed_before_it_starts_runs_nothing(
    runner: JobRunner, repos: RepoService, image: str, docker_engine: DockerEngine
) -> None:
    spec, job = job_of(repos, image, "echo x > /pfs/out/$PFS_DATUM_ID")
    stop = threading.Event()
    stop.set()
    events_since = str(int(time.time()) - 1)
    with pytest.raises(JobKilled):
        runner.run(spec, job, None, stop)
    created = docker_engine.docker(
        "events",
        "--since",
        events_since,
        "--until",
        str(int(time.time()) + 1),
        "--filter",
        f"label=pfs.job={job.id}",
        "--format",
        "{{.Action}}",
    ).stdout.split()
    assert created == []
    assert repos.find_branch("killme", "master") is None
