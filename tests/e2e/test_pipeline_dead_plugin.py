"""The trigger loop never waits on other volume plugins: with a dead one remembered,
dockerd takes about 15 s for each lookup of a volume name it does not know.

The test has an engine of its own: the dead plugin it makes would slow every later
lookup of the session's shared engine (see tests/e2e/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.conftest import RECONCILE_OFTEN
from tests.e2e.test_pipeline_engine import MISSING_IMAGE, write_spec
from tests.e2e.test_pipelines import put, wait_jobs
from tests.pfs_node import PfsNode, unique_driver_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

STALL_BOUND = 10.0
"""Seconds two jobs and their clean-up stay under with a dead plugin remembered (one
lookup that asked it would alone take about 15)."""


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A private engine (a short path: containerd's sockets live under it)."""
    own = DockerEngine(tmp_path_factory.mktemp("dk"))
    try:
        yield own.start()
    finally:
        own.stop()


@pytest.fixture
def node(tmp_path: Path, engine: DockerEngine) -> Iterator[PfsNode]:
    pfs = PfsNode(
        tmp_path / "pfs",
        driver_name=unique_driver_name("pfsdead"),
        env={"PFS_DOCKER_HOST": engine.host},
        args=RECONCILE_OFTEN,
    )
    try:
        yield pfs.start()
    finally:
        for container in engine.docker("ps", "-aq", check=False).stdout.split():
            engine.docker("rm", "-f", container, check=False)
        pfs.cleanup()


def test_a_dead_plugin_never_stalls_a_job_or_its_clean_up(
    node: PfsNode, tmp_path: Path, engine: DockerEngine
) -> None:
    # A pfs daemon the engine used once and that is gone since: dockerd remembers its
    # driver, and asks it (about 15 s, retrying) whenever it looks up a volume name it
    # does not know.
    image = engine.busybox_image()
    other = PfsNode(tmp_path / "other", env={"PFS_DOCKER_HOST": engine.host})
    other.start()
    try:
        engine.docker("volume", "create", "-d", other.driver_name, "gone")
        engine.docker("volume", "rm", "gone")
    finally:
        other.stop()
        other.cleanup()
    node.cli("repo", "create", "deadin")
    put(node, "deadin/master", "a", b"1\n")
    put(node, "deadin/master", "b", b"2\n")
    started = time.monotonic()
    # A job whose containers never start (no volume is ever made for its inputs), then
    # one that runs: the second waits for the first's clean-up in the trigger loop.
    missing = write_spec(tmp_path / "m.json", "deadfirst", "deadin", MISSING_IMAGE, "true")
    node.cli("pipeline", "create", "-f", str(missing))
    [first] = wait_jobs(node, "deadfirst", 1)
    good = write_spec(
        tmp_path / "g.json", "deadsecond", "deadin", image, "cat /pfs/in/*/* >/dev/null"
    )
    node.cli("pipeline", "create", "-f", str(good))
    [second] = wait_jobs(node, "deadsecond", 1)
    elapsed = time.monotonic() - started
    assert first["state"] == "failure" and second["state"] == "success", (first, second)
    assert elapsed < STALL_BOUND, f"two jobs and their clean-up took {elapsed:.1f} s"
    listed = engine.docker(
        "volume", "ls", "-q", "--filter", f"driver={node.driver_name}"
    ).stdout.split()
    assert not [v for v in listed if "deadin@" in v], listed
