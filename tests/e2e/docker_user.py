"""What a user of pfs does and sees: containers with pfs volumes, ``pfs`` CLI output.

Every container gets ``--network none`` and ``--pull=never``; every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode

MOUNT_POINT = "/data"
RUN_TIMEOUT = 60.0
RELEASE_FILE = "/release"
"""Outside the volume: a detached container waits for it, so it never lands in a commit."""
WAIT_FOR_RELEASE = (
    f"i=0; while [ ! -e {RELEASE_FILE} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; "
    f"test -e {RELEASE_FILE}"
)
"""A detached container's script: wait (at most 30 s) until the test releases it."""
LIST_FILES = (
    f'cd {MOUNT_POINT} && find . -type f | while read -r f; do echo "${{f#./}}=$(cat "$f")"; done'
)
COMMIT_WAIT = 15.0


class DockerUser:
    """Uses one pfs node through a Docker engine and the ``pfs`` CLI.

    Args:
        engine: the Docker engine.
        image: the busybox image tag.
        node: the pfs daemon whose driver serves the volumes.
    """

    def __init__(self, engine: DockerEngine, image: str, node: PfsNode) -> None:
        self.engine = engine
        self.image = image
        self.node = node

    @property
    def driver(self) -> str:
        """The Docker volume driver name (also the volume-name prefix)."""
        return self.node.driver_name

    @property
    def listed_driver(self) -> str:
        """The driver name Docker lists a volume with: a managed plugin's has its tag
        (``NAME:latest``), and ``docker volume ls --filter driver=`` wants it so."""
        return self.node.listed_driver

    def volume(self, name: str) -> str:
        """The full Docker volume name: ``DRIVER/name``."""
        return f"{self.driver}/{name}"

    def mount_args(self, name: str) -> list[str]:
        """``docker run`` arguments that mount ``DRIVER/name`` at /data.

        The driver is given explicitly: for a name Docker does not know yet and no
        ``--volume-driver``, Docker asks every plugin socket on the host, which is slow
        when another run left a stale one. (test_docker_volume_flow covers that path.)
        """
        return ["--volume-driver", self.driver, "-v", f"{self.volume(name)}:{MOUNT_POINT}"]

    def run(
        self, name: str, script: str, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sh -c script`` in a container with ``DRIVER/name`` mounted at /data."""
        return self.engine.run(
            *self.mount_args(name), self.image, "sh", "-c", script, check=check, timeout=RUN_TIMEOUT
        )

    def start(self, name: str) -> str:
        """Start a detached container that keeps ``DRIVER/name`` mounted until released.

        Returns:
            The container id. Docker has called Mount when this returns.
        """
        detached = ["run", "-d", "--pull=never", "--network", "none", *self.mount_args(name)]
        command = [self.image, "sh", "-c", WAIT_FOR_RELEASE]
        done = self.engine.docker(*detached, *command, timeout=RUN_TIMEOUT)
        return done.stdout.strip()

    def exec(
        self, container: str, script: str, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sh -c script`` inside a running container."""
        return self.engine.docker(
            "exec", container, "sh", "-c", script, check=check, timeout=RUN_TIMEOUT
        )

    def release(self, container: str) -> int:
        """Let a detached container exit, wait for it, remove it; its exit code."""
        self.exec(container, f"touch {RELEASE_FILE}")
        code = int(self.engine.docker("wait", container, timeout=RUN_TIMEOUT).stdout.strip())
        self.engine.docker("rm", container, timeout=RUN_TIMEOUT)
        return code

    def files(self, repo: str, ref: str) -> dict[str, str]:
        """Every file of ``repo@ref`` (mounted read-only through Docker): path -> text."""
        out = self.run(f"{repo}@{ref}", LIST_FILES).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if line)

    def log(self, target: str) -> list[dict[str, Any]]:
        """``pfs log TARGET --json``: commits, newest first."""
        commits: list[dict[str, Any]] = self.node.cli_json("log", target)
        return commits

    def wait_for_commits(self, target: str, count: int) -> list[dict[str, Any]]:
        """``pfs log`` once it shows at least ``count`` commits (bounded wait).

        Docker calls Unmount as a container stops; a detached container's commit may
        land a moment after ``docker wait`` returns.
        """
        deadline = time.monotonic() + COMMIT_WAIT
        while True:
            commits = self.log(target)
            if len(commits) >= count or time.monotonic() > deadline:
                return commits
            time.sleep(0.1)

    def repos(self) -> list[dict[str, Any]]:
        """``pfs repo list --json``."""
        repos: list[dict[str, Any]] = self.node.cli_json("repo", "list")
        return repos

    def inspect_volume(self, name: str) -> dict[str, Any]:
        """``docker volume inspect DRIVER/name``: the one volume's JSON."""
        done = self.engine.docker("volume", "inspect", self.volume(name), timeout=RUN_TIMEOUT)
        volumes: list[dict[str, Any]] = json.loads(done.stdout)
        assert len(volumes) == 1, volumes
        return volumes[0]

    def docker_volume_names(self) -> list[str]:
        """``docker volume ls`` names of this driver's volumes."""
        done = self.engine.docker(
            "volume", "ls", "-q", "--filter", f"driver={self.listed_driver}", timeout=RUN_TIMEOUT
        )
        return done.stdout.split()
