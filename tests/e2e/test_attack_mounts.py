"""Docker power-user moves against mount records: each must keep what a container wrote
committed when it stops (issue 11)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.docker_engine import docker_cli
from tests.e2e.docker_user import MOUNT_POINT, WAIT_FOR_RELEASE, DockerUser
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]


def test_docker_cp_from_a_running_container_keeps_its_mount(
    user: DockerUser, pfs: PfsNode, tmp_path: Path
) -> None:
    """``docker cp`` mounts a running container's volumes again with the SAME mount ID
    and unmounts them after: that Unmount must not release the container's mount."""
    container = user.start("cp")
    user.exec(container, f"echo before > {MOUNT_POINT}/before")
    [mount_id] = user.inspect_volume("cp")["Status"]["mount_ids"]
    user.engine.docker("cp", f"{container}:{MOUNT_POINT}/before", str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "before\n"
    assert user.inspect_volume("cp")["Status"]["mount_ids"] == [mount_id]
    time.sleep(2.5)  # reconciliation passes
    user.exec(container, f"echo after > {MOUNT_POINT}/after")
    assert user.release(container) == 0
    deadline = time.monotonic() + 15
    while True:
        commits = user.log("cp")
        if commits and user.files("cp", commits[0]["id"]).get("after") == "after":
            break
        assert time.monotonic() < deadline, f"the last write was never committed: {commits}"
        time.sleep(0.5)


def test_a_slow_docker_cp_into_a_stopped_container_is_committed_whole(
    user: DockerUser, pfs: PfsNode
) -> None:
    """A stopped container holds its volume only for the grace: a ``docker cp`` into it
    that takes longer has its mount released while it still writes. Its Unmount comes at
    the end all the same and commits what was written after the release."""
    pfs.stop()
    pfs.args = ["--reconcile-interval", "1", "--reconcile-grace", "1"]
    pfs.start()
    name = "cp-target"
    user.engine.docker(
        "run",
        "--name",
        name,
        "--pull=never",
        "--network",
        "none",
        *user.mount_args("slowcp"),
        user.image,
        "true",
        timeout=60,
    )
    assert user.wait_for_commits("slowcp", 0) == []
    copy = subprocess.Popen(
        [docker_cli(), "-H", user.engine.host, "cp", "-", f"{name}:{MOUNT_POINT}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert copy.stdin is not None
    with tarfile.open(fileobj=copy.stdin, mode="w|") as tar:
        add(tar, "first", b"1")
        copy.stdin.flush()
        deadline = time.monotonic() + 15
        while "no container holds it" not in pfs.log():  # released while copying
            assert time.monotonic() < deadline, "the copy's mount was never released"
            time.sleep(0.2)
        add(tar, "second", b"2")
    copy.stdin.close()
    assert copy.wait(timeout=60) == 0, copy.stderr.read() if copy.stderr else ""
    deadline = time.monotonic() + 15
    while True:
        commits = user.log("slowcp")
        if commits and user.files("slowcp", commits[0]["id"]) == {"first": "1", "second": "2"}:
            break
        assert time.monotonic() < deadline, f"the copy's last file was never committed: {commits}"
        time.sleep(0.5)


def detached(user: DockerUser, volume: str, options: list[str], script: str) -> str:
    """``docker run -d`` of ``sh -c script`` with ``volume`` at /data and ``options``;
    the container id."""
    return user.engine.docker(
        "run",
        "-d",
        "--pull=never",
        "--network",
        "none",
        "--volume-driver",
        user.driver,
        "-v",
        f"{volume}:{MOUNT_POINT}",
        *options,
        user.image,
        "sh",
        "-c",
        script,
        timeout=60,
    ).stdout.strip()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def test_one_volume_at_two_paths_of_a_paused_container_copied_from(
    user: DockerUser, pfs: PfsNode, tmp_path: Path
) -> None:
    """Two mount points of one volume in one container (``--mount`` syntax for one), the
    container paused and copied from: both mounts stay until it stops, then it commits."""
    volume = user.volume("twice")
    container = detached(
        user,
        volume,
        ["--mount", f"type=volume,src={volume},dst=/again,volume-driver={user.driver}"],
        WAIT_FOR_RELEASE,
    )
    ids = sorted(user.inspect_volume("twice")["Status"]["mount_ids"])
    assert len(ids) == 2
    user.exec(container, f"echo one > {MOUNT_POINT}/one")
    user.engine.docker("pause", container)
    user.engine.docker("cp", f"{container}:/again/one", str(tmp_path / "one"))
    time.sleep(2.5)  # reconciliation passes
    assert sorted(user.inspect_volume("twice")["Status"]["mount_ids"]) == ids
    user.engine.docker("unpause", container)
    user.exec(container, "echo two > /again/two")
    assert user.release(container) == 0
    [commit] = user.wait_for_commits("twice", 1)
    assert user.files("twice", commit["id"]) == {"one": "one", "two": "two"}
    assert "no container holds it" not in pfs.log()


def test_a_crash_looping_container_commits_every_run_and_leaves_no_record(
    user: DockerUser, pfs: PfsNode
) -> None:
    volume = user.volume("loop")
    container = detached(
        user,
        volume,
        ["--restart=on-failure:2"],
        f"echo run >> {MOUNT_POINT}/runs; sleep 0.3; exit 3",
    )
    deadline = time.monotonic() + 30
    while user.engine.docker("inspect", "-f", "{{.State.Status}}", container).stdout.strip() != (
        "exited"
    ):
        assert time.monotonic() < deadline, "the container never stopped restarting"
        time.sleep(0.3)
    commits = user.wait_for_commits("loop", 3)
    assert len(commits) == 3
    assert pfs.cli("cat", f"loop@{commits[0]['id']}", "runs").stdout == "run\nrun\nrun\n"
    assert pfs.cli_json("mount", "list") == []
