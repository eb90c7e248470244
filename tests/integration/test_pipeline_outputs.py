"""Pipelines' data on a real btrfs pool: a dirty output working copy is set aside, never
deleted (invariant 1); datum outputs no job can reuse are collected, and the space comes
back; deleting a pipeline removes what it kept.

Jobs run their datums through a small stand-in for the Docker engine that does what a
container would do to the pool: read the input commits the runner names, write into the
scratch subvolume it binds at /pfs/out. Everything else (subvolumes, snapshots,
commits, deletes) is the real thing. Containers on a real engine: tests/e2e.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.errors import NotFound
from pfs_volume.files import FileService
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.service import PipelineService
from pfs_volume.repos import RepoService
from tests import fake_docker
from tests.fake_docker import Container

MIB = 1024**2


class Containers(fake_docker.Containers):
    """Runs each datum when its container is created: every file of the datum is copied
    to /pfs/out in upper case (``bad`` files make it exit 1). Counts the runs by datum
    path."""

    def __init__(self, repos: RepoService) -> None:
        super().__init__()
        self.repos = repos
        self.runs: list[str] = []

    def create(self, _image: str, command: list[str], **options: Any) -> Container:
        mounts = {m["Target"]: m["Source"] for m in options["mounts"]}
        out = Path(mounts["/pfs/out"])
        repo, commit = mounts["/pfs/in/text"].split("/", 1)[1].split("@")
        root = self.repos.commit_path(repo, commit)
        path = Path(options["environment"]["PFS_DATUM_TEXT"]).name
        self.runs.append(path)
        data = (root / path).read_bytes()
        if data.startswith(b"bad"):
            return self.keep(Container(1))
        (out / f"{path}.out").write_bytes(data.upper())
        return self.keep(Container(0))


class Engine(fake_docker.Engine):
    def __init__(self, repos: RepoService) -> None:
        self.containers: Containers = Containers(repos)
        super().__init__(self.containers)


SPEC = {
    "name": "up",
    "input": {"repo": "text", "glob": "/*"},
    "transform": {"image": "busybox", "cmd": ["upper"]},
}


@pytest.fixture
def engine(repos: RepoService) -> Engine:
    return Engine(repos)


@pytest.fixture
def pipelines(repos: RepoService, engine: Engine) -> Iterator[PipelineService]:
    service = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: engine, "pfs"),
    )
    yield service
    service.stop()  # no job thread may outlive the pool


def put(repos: RepoService, path: str, data: bytes) -> None:
    from io import BytesIO

    FileService(repos).put("text", "master", path, BytesIO(data))


def outputs(pipelines: PipelineService) -> list[str]:
    """The kept datum outputs, as ``DATUM_PATH_PREFIX/JOB`` sorted (subvolumes only)."""
    folder = pipelines.runner.root / "up" / "datums"
    found = []
    for made in sorted(folder.glob("*/*")):
        assert pipelines.repos.pool.is_subvolume(made), made
        found.append(f"{made.parent.name[:8]}/{made.name}")
    return sorted(found)


def run(pipelines: PipelineService) -> dict[str, Any]:
    pipelines.tick()  # queues and starts the job in the node's job slots
    assert pipelines.settle(30), "the job did not end"
    job = pipelines.jobs.list("up")[-1]
    return {"state": job.state, "datums": {d.paths["text"]: d for d in job.datums}, "id": job.id}


def test_a_dirty_output_working_copy_is_set_aside_with_its_bytes(
    repos: RepoService,
    pipelines: PipelineService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repos.create_repo("text")
    put(repos, "a", b"alpha")
    pipelines.create(SPEC)
    # As a crash (or a container whose mount was released) leaves it: bytes in the
    # output's working copy that no commit holds.
    work = repos.working_copy("up", "master")
    precious = bytes(range(256)) * 4096
    (work / "precious").write_bytes(precious)
    caplog.set_level(logging.WARNING, logger="pfs_volume.repos")
    first = run(pipelines)
    assert first["state"] == "success", first
    kept = list((repos.repo_dir("up") / "detached").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("master.empty.")
    assert (kept[0] / "precious").read_bytes() == precious
    assert str(kept[0]) in caplog.text and "no commit holds" in caplog.text
    head = repos.get_branch("up", "master").head
    assert head is not None
    listed = sorted(p.name for p in repos.commit_path("up", head).iterdir())
    assert listed == ["a.out"], "the output commit holds the job's output only"
    # A clean working copy (the last job's output, committed) is simply replaced.
    put(repos, "b", b"beta")
    assert run(pipelines)["state"] == "success"
    assert len(list((repos.repo_dir("up") / "detached").iterdir())) == 1


def test_unused_datum_outputs_are_collected_and_reuse_still_works(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    repos.create_repo("text")
    for name in ("a", "b", "c"):
        put(repos, name, name.encode() * MIB)
    pipelines.create(SPEC)
    first = run(pipelines)
    assert first["state"] == "success" and sorted(engine.containers.runs) == ["a", "b", "c"]
    datums = pipelines.runner.root / "up" / "datums"
    assert len(outputs(pipelines)) == 3
    used = repos.pool.disk_usage(datums)
    assert 3 * MIB <= used < 4 * MIB

    # a changes: its datum runs again, the first run's output of a is no use any more.
    put(repos, "a", b"A" * MIB)
    second = run(pipelines)
    assert second["state"] == "success" and engine.containers.runs[3:] == ["a"]
    assert [second["datums"][p].state for p in "abc"] == ["success", "reused", "reused"]
    kept = {(d.id[:8], d.job) for d in second["datums"].values()}
    assert {tuple(o.split("/")) for o in outputs(pipelines)} == kept
    assert repos.pool.disk_usage(datums) < 4 * MIB, "the old output's space came back"

    # The kept outputs are reused: only b runs when b changes.
    put(repos, "b", b"B" * MIB)
    third = run(pipelines)
    assert third["state"] == "success" and engine.containers.runs[4:] == ["b"]
    assert [third["datums"][p].state for p in "abc"] == ["reused", "success", "reused"]
    assert third["datums"]["a"].job == second["id"] and third["datums"]["c"].job == first["id"]
    assert len(outputs(pipelines)) == 3

    # A failed job's outputs are never reused (a job reuses the latest success): they go;
    # the latest success's stay.
    put(repos, "c", b"C" * MIB)
    put(repos, "d", b"bad")
    fourth = run(pipelines)
    assert fourth["state"] == "failure"
    assert {tuple(o.split("/")) for o in outputs(pipelines)} == {
        (d.id[:8], d.job) for d in third["datums"].values()
    }

    # gc finds what a crash left behind (an output no job record names).
    stray = datums / third["datums"]["a"].id / "20200101T000000000000-000000"
    repos.pool.snapshot(datums / third["datums"]["a"].id / second["id"], stray, readonly=True)
    assert pipelines.collect_outputs() == 1 and not stray.exists()
    assert pipelines.collect_outputs() == 0

    # Deleting the pipeline deletes all it kept; its jobs' records stay.
    pipelines.delete("up")
    assert not (pipelines.runner.root / "up").exists()
    assert len(pipelines.jobs.list("up")) == 4
    with pytest.raises(NotFound) as gone:
        pipelines.logs(first["id"])
    assert str(gone.value) == (
        f"the logs of job {first['id']} were deleted with its pipeline up; its record "
        "stays (pfs job inspect)"
    )
    # What a job still ending leaves of a deleted pipeline goes at the next gc.
    late = pipelines.runner.datum_output("up", "d" * 64, "20300101T000000000000-000000")
    late.parent.mkdir(parents=True)
    repos.pool.create_subvolume(late)
    (pipelines.runner.root / "up" / "jobs").mkdir()
    assert pipelines.collect_outputs() == 1
    assert not (pipelines.runner.root / "up").exists()
