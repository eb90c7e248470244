"""A daemon killed while a container has a writable volume mounted loses nothing: the
legacy daemon started again, or the managed plugin's process, which Docker restarts."""

from __future__ import annotations

import pytest

from tests.e2e.docker_user import DockerUser
from tests.managed_plugin import BACKENDS
from tests.pfs_node import PfsNode

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("docker-engine"),
    pytest.mark.parametrize("pfs", BACKENDS, indirect=True),
]


def test_unmount_after_a_sigkill_and_restart_still_commits(user: DockerUser, pfs: PfsNode) -> None:
    user.run("photos", "echo 1 > /data/a")
    [first] = user.log("photos")
    container = user.start("photos@master")
    user.exec(container, "echo before > /data/before")
    [mount_id] = user.inspect_volume("photos@master")["Status"]["mount_ids"]

    pfs.kill()
    user.exec(container, "echo during > /data/during")
    pfs.start()

    status = user.inspect_volume("photos@master")["Status"]
    assert status["mount_ids"] == [mount_id]
    assert user.log("photos") == [first]
    user.exec(container, "echo after > /data/after")
    assert user.release(container) == 0
    commits = user.wait_for_commits("photos", 2)
    assert len(commits) == 2
    assert commits[1] == first
    assert commits[0]["parent"] == first["id"]
    assert mount_id in commits[0]["message"]
    assert user.files("photos", commits[0]["id"]) == {
        "a": "1",
        "before": "before",
        "during": "during",
        "after": "after",
    }
    assert user.files("photos", first["id"]) == {"a": "1"}
    assert user.inspect_volume("photos@master")["Status"]["mounts"] == 0
