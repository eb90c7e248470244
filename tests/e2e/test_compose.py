"""examples/compose/docker-compose.yml, run by Debian's docker-compose 1.29 against the
private engine (DOCKER_HOST) and the legacy daemon under the session's unique driver
name: names with "/" and "@" given by ``name:``, the driver by ``driver:``, commits made
when containers stop, a commit read back read-only, and data kept by ``down -v``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.conftest import running_engine
from tests.e2e.docker_user import DockerUser
from tests.pfs_node import unique_driver_name

# Its own engine: Compose looks volumes up by name across every driver, and the shared
# engine knows drivers that are gone (each held such a lookup about 15 s: 225 s in one
# run). In the shared engine's group all the same, so one after another with its tests:
# while its daemon answers, another engine's `docker volume ls` would find its socket in
# Docker's folder and keep its driver for good, to wait on it once it is gone.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "compose" / "docker-compose.yml"
COMPOSE_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """This module's own engine."""
    yield from running_engine(tmp_path_factory.mktemp("docker"))


@pytest.fixture(scope="module")
def image(docker_engine: DockerEngine) -> str:
    """The busybox image on this module's engine."""
    return docker_engine.busybox_image()


class Compose:
    """docker-compose on the example, as one project, against the private engine."""

    def __init__(self, engine: DockerEngine, image: str, driver: str) -> None:
        binary = shutil.which("docker-compose")
        assert binary, "docker-compose is missing: scripts/bootstrap installs it"
        self.command = [binary, "-f", str(EXAMPLE), "-p", unique_driver_name("pfscompose")]
        self.env = {
            **os.environ,
            "DOCKER_HOST": engine.host,
            "PFS_DRIVER": driver,
            "IMAGE": image,
        }

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT,
            check=False,
            env={**self.env, **env},
        )
        assert done.returncode == 0, f"docker-compose {' '.join(args)}:\n{done.stderr}"
        return done


def volumes(engine: DockerEngine, driver: str) -> list[str]:
    """The names of ``driver``'s volumes Docker knows (listed by driver: see conftest)."""
    listed = engine.docker("volume", "ls", "-q", "--filter", f"driver={driver}")
    return listed.stdout.split()


def test_the_compose_example_commits_reads_a_commit_and_keeps_data_on_down(
    user: DockerUser, docker_engine: DockerEngine, image: str
) -> None:
    compose = Compose(docker_engine, image, user.node.driver_name)
    at = "master"
    history: list[dict[str, object]] = []
    try:
        compose("up", "--no-color")
        [master] = user.log("photos")
        [thumbs] = user.log("photos/thumbs")
        assert user.files("photos", master["id"]) == {"greeting": "hello"}
        assert user.files("photos", thumbs["id"]) == {"small": "hello"}
        names = volumes(docker_engine, user.node.driver_name)
        assert {"photos@master", "photos/thumbs"} <= set(names), names

        # The volumes exist now: Compose compares their driver with the file's, and
        # the writer's rewrite of the file is a new commit.
        compose("up", "--no-color")
        history = user.log("photos")
        assert [c["parent"] for c in history] == [master["id"], None]

        at = master["id"]
        read = compose("--profile", "read", "run", "--rm", "reader", AT=at)
        assert read.stdout.strip() == "hello"
        assert f"photos@{master['id']}" in volumes(docker_engine, user.node.driver_name)
    finally:
        # down -v removes the volumes the file names now: AT as for the run.
        compose("--profile", "read", "down", "-v", AT=at)
    names = volumes(docker_engine, user.node.driver_name)
    assert not [n for n in names if n.startswith("photos")], names
    assert user.log("photos") == history, "down -v forgets names, never repo data"
