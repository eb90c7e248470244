"""Containers with pfs volumes: what gets committed, to which branch, and when; the core
flows against both the legacy daemon and the managed plugin."""

from __future__ import annotations

import pytest

from tests.e2e.docker_user import MOUNT_POINT, DockerUser
from tests.managed_plugin import BACKENDS

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

on_both = pytest.mark.parametrize("pfs", BACKENDS, indirect=True)
"""The core flows run against the managed plugin too (create, run, commit on unmount,
read-only commits, a branch at a commit); the others only against the legacy daemon:
the plugin serves the same code, and the suite's time is short."""


@on_both
def test_a_write_to_a_created_volume_makes_one_commit_with_the_file(user: DockerUser) -> None:
    name = user.volume("photos@master")
    user.engine.docker("volume", "create", "--driver", user.driver, name)

    user.engine.run("-v", f"{name}:{MOUNT_POINT}", user.image, "sh", "-c", "echo hi > /data/a")

    commits = user.log("photos")
    assert len(commits) == 1
    assert commits[0]["branch"] == "master"
    assert commits[0]["parent"] is None
    assert user.files("photos", commits[0]["id"]) == {"a": "hi"}


@on_both
def test_volumes_work_without_create_by_prefix_by_volume_driver_and_by_mount(
    user: DockerUser,
) -> None:
    engine, image, driver = user.engine, user.image, user.driver

    by_prefix = ["-v", f"{driver}/photos@master:/data"]
    by_volume_driver = ["--volume-driver", driver, "-v", "photos@master:/data"]
    by_mount = [
        "--mount",
        f"type=volume,source={driver}/photos,target=/data,volume-driver={driver}",
    ]
    engine.run(*by_prefix, image, "sh", "-c", "echo 1 > /data/a")
    engine.run(*by_volume_driver, image, "sh", "-c", "echo 2 > /data/b")
    engine.run(*by_mount, image, "sh", "-c", "echo 3 > /data/c")

    commits = user.log("photos")
    assert len(commits) == 3
    assert [c["parent"] for c in commits] == [commits[1]["id"], commits[2]["id"], None]
    assert user.files("photos", commits[2]["id"]) == {"a": "1"}
    assert user.files("photos", commits[1]["id"]) == {"a": "1", "b": "2"}
    assert user.files("photos", commits[0]["id"]) == {"a": "1", "b": "2", "c": "3"}


@on_both
def test_a_commit_mounts_read_only_by_id_prefix_and_ancestry(user: DockerUser) -> None:
    user.run("photos", "echo 1 > /data/a")
    user.run("photos", "echo 2 > /data/b")
    second, first = user.log("photos")
    first_id = first["id"]

    assert user.files("photos", first_id) == {"a": "1"}
    assert user.files("photos", first_id[:8]) == {"a": "1"}
    assert user.files("photos", "master~1") == {"a": "1"}
    assert user.files("photos", "master~0") == {"a": "1", "b": "2"}
    assert user.files("photos", second["id"][:8]) == {"a": "1", "b": "2"}
    for ref in (first_id, first_id[:8], "master~0"):
        write = user.run(f"photos@{ref}", "echo x > /data/new", check=False)
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr
        remove = user.run(f"photos@{ref}", "rm /data/a", check=False)
        assert remove.returncode != 0
        assert "Read-only file system" in remove.stderr

    assert user.log("photos") == [second, first]
    assert user.files("photos", first_id) == {"a": "1"}


def test_reading_a_branch_commits_nothing_and_a_deletion_commits(user: DockerUser) -> None:
    user.run("photos", "echo hi > /data/a")
    [first] = user.log("photos")

    read = user.run("photos@master", "cat /data/a; ls -la /data >/dev/null")
    assert read.stdout == "hi\n"
    assert user.log("photos") == [first]

    user.run("photos@master", "rm /data/a")
    commits = user.log("photos")
    assert len(commits) == 2
    assert commits[0]["parent"] == first["id"]
    assert user.files("photos", commits[0]["id"]) == {}
    assert user.files("photos", first["id"]) == {"a": "hi"}


def test_two_containers_share_one_working_copy_and_the_last_exit_commits(
    user: DockerUser,
) -> None:
    first = user.start("photos@master")
    user.exec(first, "echo A > /data/a")

    second = user.run("photos@master", "cat /data/a; echo B > /data/b")

    assert second.stdout == "A\n"
    assert user.log("photos") == [], "the first exit committed while a mount remained"
    assert user.exec(first, "cat /data/b").stdout == "B\n"
    assert user.release(first) == 0
    commits = user.wait_for_commits("photos", 1)
    assert len(commits) == 1
    assert user.files("photos", commits[0]["id"]) == {"a": "A", "b": "B"}


@on_both
def test_a_branch_at_a_commit_takes_writes_and_master_stays(user: DockerUser) -> None:
    user.run("photos", "echo 1 > /data/a")
    user.run("photos", "echo 2 > /data/b")
    master_head, base = user.log("photos")

    seen = user.run(f"photos/feature@{base['id']}", "ls /data; echo f > /data/f")

    assert seen.stdout.split() == ["a"]
    feature = user.log("photos/feature")
    assert [c["id"] for c in feature[1:]] == [base["id"]]
    assert feature[0]["branch"] == "feature"
    assert feature[0]["parent"] == base["id"]
    assert user.files("photos", feature[0]["id"]) == {"a": "1", "f": "f"}
    assert user.log("photos") == [master_head, base]
    assert user.files("photos", "master") == {"a": "1", "b": "2"}

    moved = user.run(f"photos/feature@{base['id']}", "true", check=False)
    assert moved.returncode != 0
    assert f"exists with head {feature[0]['id']}" in moved.stderr
    again = user.run("photos/feature", "cat /data/f")
    assert again.stdout == "f\n"
    assert user.log("photos/feature") == feature
