"""Changes around a running container, each with its own Docker engine: pfs restarted
under another driver name, and dockerd killed and started again.

Each test has a private engine because a driver name Docker used and that then dies
makes later calls of that engine wait about 15 s (see tests/e2e/conftest.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.conftest import RECONCILE_OFTEN
from tests.e2e.docker_user import RELEASE_FILE, DockerUser
from tests.pfs_node import PfsNode, unique_driver_name

# Its own engines and driver names, but in the shared engine's group all the same: while
# its daemons answer, any `docker volume ls` of another engine finds their sockets in
# Docker's folder and keeps their drivers for good, and once they are gone, every name
# looked up without a driver on that engine waited 15 s on each (45 to 60 s a lookup).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

SETTLE = 25.0
"""Seconds to wait for reconciliation (passes every second, 10 s grace)."""


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A private engine (a short path: containerd's sockets live under it)."""
    own = DockerEngine(tmp_path_factory.mktemp("dk"))
    try:
        yield own.start()
    finally:
        own.stop()


def node_for(state_dir: Path, engine: DockerEngine, driver: str) -> PfsNode:
    return PfsNode(
        state_dir, driver_name=driver, env={"PFS_DOCKER_HOST": engine.host}, args=RECONCILE_OFTEN
    )


def records(node: PfsNode) -> list[str]:
    return sorted(r["id"] for r in node.cli_json("mount", "list"))


def test_a_mount_made_under_the_old_driver_name_lives_while_its_container_runs(
    tmp_path: Path, engine: DockerEngine
) -> None:
    """pfs restarted under another --driver-name while a container of the old name runs
    and writes: its record stays while it runs, doctor says so, and once it stops the
    record is released and everything it wrote is committed."""
    old = node_for(tmp_path / "pfs", engine, unique_driver_name("pfsold"))
    new = node_for(tmp_path / "pfs", engine, unique_driver_name("pfsnew"))
    try:
        old.start()
        user = DockerUser(engine, engine.busybox_image(), old)
        container = user.start("renamed")
        user.exec(container, "echo 1 > /data/before")
        [held] = records(old)
        old.stop()
        new.start()
        user.exec(container, "echo 2 > /data/after")
        time.sleep(2.5)  # two passes or more
        assert records(new) == [held]
        doctor = new.cli("doctor", check=False).stdout
        assert f"mount {held} of {old.driver_name}/renamed" in doctor
        assert "and is held by a container" in doctor, doctor
        assert "do not release the mount while they write" in doctor, doctor
        assert "pfs mount release" not in doctor, doctor
        assert new.cli_json("log", "renamed") == []
        user.exec(container, f"touch {RELEASE_FILE}")
        # Docker's Unmount goes to the old name's socket, which is gone: Docker retries
        # it for ~15 s and lists the container as running until then.
        new.wait_until_no_mounts(SETTLE)
        [commit] = new.cli_json("log", "renamed")
        assert held in commit["message"]
        assert new.cli("cat", "renamed@master", "before").stdout == "1\n"
        assert new.cli("cat", "renamed@master", "after").stdout == "2\n"
        assert f"mount={held}: no container holds it" in new.log()
    finally:
        old.stop()
        new.cleanup()
        old.cleanup()


def test_dockerd_killed_while_a_container_writes_its_mount_commits_after_restart(
    tmp_path: Path, engine: DockerEngine
) -> None:
    """dockerd is SIGKILLed while a container holds a pfs mount and has written; once the
    engine is back on the same data root, the write is committed and no record stays."""
    node = node_for(tmp_path / "pfs", engine, unique_driver_name("pfskill"))
    try:
        node.start()
        user = DockerUser(engine, engine.busybox_image(), node)
        container = user.start("killed")
        user.exec(container, "echo kept > /data/kept")
        [held] = records(node)
        assert engine.process is not None
        os.kill(engine.process.pid, signal.SIGKILL)
        engine.process.wait(timeout=30)
        engine.process = None
        time.sleep(2.5)  # passes that cannot ask the engine release nothing
        assert records(node) == [held]
        engine.start()
        engine.docker("wait", container, timeout=60)
        node.wait_until_no_mounts(SETTLE)
        [commit] = node.cli_json("log", "killed")
        assert node.cli("cat", "killed@master", "kept").stdout == "kept\n"
        assert held in commit["message"]
        assert f"mount={held}: no container holds it" in node.log()
    finally:
        node.cleanup()
