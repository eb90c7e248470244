"""Docker power-user moves against mount records: each must keep what a container wrote
committed when it stops (issue 11)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.docker_user import MOUNT_POINT, DockerUser
from tests.pfs_node import PfsNode

pytestmark = pytest.mark.e2e


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
