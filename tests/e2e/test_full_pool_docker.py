"""A container fills the pool: Docker's Unmount cannot commit, the user is told (the
daemon log, ``docker volume inspect``, ``pfs repo inspect``, ``pfs doctor``), pfs's own
gc gives space back, and the next run of the volume commits everything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import RECONCILE_OFTEN
from tests.e2e.docker_user import DockerUser
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

MIB = 1024 * 1024


def test_a_container_that_fills_the_pool_is_told_and_commits_once_space_is_back(
    user: DockerUser, pfs: PfsNode, tmp_path: Path, attach_log: Callable[[str, Path], None]
) -> None:
    pfs.stop()  # the session's driver name, served from a small pool for this test
    small = PfsNode(
        tmp_path / "small",
        driver_name=pfs.driver_name,
        pool_size="256M",
        env={"PFS_DOCKER_HOST": user.engine.host},
        args=RECONCILE_OFTEN,
    )
    attach_log(f"small pool daemon log ({small.state_dir})", small.log_path)
    user.node = small
    try:
        small.start()
        user.run("old", "dd if=/dev/zero of=/data/f bs=1M count=40 2>/dev/null")
        user.run("old", "rm /data/f && echo small > /data/s")
        filled = user.run(
            "photos", "dd if=/dev/zero of=/data/big bs=1M count=400 2>/dev/null; ls -l /data/big"
        )
        written = int(filled.stdout.split()[4])
        assert 100 * MIB < written < 400 * MIB  # the pool ran out

        status = user.inspect_volume("photos")["Status"]
        assert status["uncommitted_changes"] is True
        assert "the pool is full" in status["last_commit_error"]["message"]
        [master] = small.cli_json("repo", "inspect", "photos")["branches"]
        assert "the pool is full" in master["last_commit_error"]["message"]
        assert "commit failed" in small.log()
        doctor = small.cli("doctor", check=False)
        assert doctor.returncode == 1
        assert "the last auto-commit of photos/master failed" in doctor.stdout
        assert small.cli_json("mount", "list") == []

        small.cli("gc", "old", "--keep-last", "1")
        user.run("photos", "true")  # the next Mount and Unmount commit what was left
        [commit] = user.log("photos")
        [entry] = small.cli_json("ls", f"photos@{commit['id']}")
        assert (entry["name"], entry["size"]) == ("big", written)
        status = user.inspect_volume("photos")["Status"]
        assert status["uncommitted_changes"] is False and "last_commit_error" not in status
    finally:
        small.cleanup()
        user.node = pfs
        pfs.start()
