"""``docker volume ls/inspect/rm`` and ``pfs repo delete`` on pfs volumes."""

from __future__ import annotations

import pytest

from tests.e2e.docker_user import DockerUser
from tests.managed_plugin import BACKENDS

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]


@pytest.mark.parametrize("pfs", BACKENDS, indirect=True)
def test_volume_ls_and_inspect_show_repo_branch_head_and_mounts(user: DockerUser) -> None:
    name = user.volume("photos@master")
    user.engine.docker("volume", "create", "--driver", user.driver, name)

    fresh = user.inspect_volume("photos@master")
    assert fresh["Driver"] == user.listed_driver
    assert fresh["Name"] == name
    assert fresh["Status"]["repo"] == "photos"
    assert fresh["Status"]["branch"] == "master"
    assert fresh["Status"]["writable"] is True
    assert fresh["Status"]["head"] is None
    assert fresh["Status"]["mounts"] == 0

    user.run("photos@master", "echo hi > /data/a")
    [commit] = user.log("photos")
    assert name in user.docker_volume_names()
    container = user.start("photos@master")
    busy = user.inspect_volume("photos@master")["Status"]
    assert busy["head"] == commit["id"]
    assert busy["mounts"] == 1
    assert len(busy["mount_ids"]) == 1
    assert user.release(container) == 0
    assert user.inspect_volume("photos@master")["Status"]["mounts"] == 0

    snapshot = f"photos@{commit['id']}"
    assert user.files("photos", commit["id"]) == {"a": "hi"}
    assert user.volume(snapshot) in user.docker_volume_names()
    frozen = user.inspect_volume(snapshot)["Status"]
    assert frozen["repo"] == "photos"
    assert frozen["commit"] == commit["id"]
    assert frozen["head"] == commit["id"]
    assert frozen["writable"] is False
    assert "branch" not in frozen


def test_volume_create_of_an_unprefixed_name_makes_the_repo_and_lists_it(
    user: DockerUser,
) -> None:
    user.engine.docker("volume", "create", "--driver", user.driver, "albums")

    assert "albums" in user.docker_volume_names()
    assert [r["name"] for r in user.repos()] == ["albums"]
    assert user.log("albums") == []


def test_volume_create_of_a_prefixed_name_makes_the_repo_and_lists_it(
    user: DockerUser,
) -> None:
    # Docker asks Get first and skips Create when Get answers: Get must create.
    user.engine.docker("volume", "create", "--driver", user.driver, user.volume("photos"))

    assert user.volume("photos") in user.docker_volume_names()
    assert [r["name"] for r in user.repos()] == ["photos"]


def test_volume_create_with_an_option_is_refused(user: DockerUser) -> None:
    # Only for names Docker sends to Create: for a name under the prefix, Docker asks Get
    # first, which claims it, and never passes the options to the driver at all.
    created = user.engine.docker(
        "volume", "create", "--driver", user.driver, "-o", "size=1G", "albums", check=False
    )
    assert created.returncode != 0
    assert "pfs volumes take no options (-o); got size" in created.stderr
    assert user.repos() == []


def test_volume_rm_keeps_the_repo_and_repo_delete_removes_it(user: DockerUser) -> None:
    user.run("photos@master", "echo hi > /data/a")
    commits = user.log("photos")
    assert len(commits) == 1

    user.engine.docker("volume", "rm", user.volume("photos@master"))

    assert user.volume("photos@master") not in user.docker_volume_names()
    assert [r["name"] for r in user.repos()] == ["photos"]
    assert user.log("photos") == commits
    assert user.files("photos", commits[0]["id"]) == {"a": "hi"}

    deleted = user.node.cli("repo", "delete", "photos", "--yes")
    assert "photos" in deleted.stdout
    assert user.repos() == []
    gone = user.node.cli("log", "photos", check=False)
    assert gone.returncode == 1
    assert "there is no repo 'photos'" in gone.stderr
    assert user.run("photos@master", "ls -A /data").stdout == ""


def test_deleting_a_mounted_repo_is_refused_and_changes_nothing(user: DockerUser) -> None:
    user.run("photos", "echo 1 > /data/a")
    repos, commits = user.repos(), user.log("photos")
    container = user.start("photos@master")
    user.exec(container, "echo 2 > /data/b")

    refused = user.node.cli("repo", "delete", "photos", "--yes", check=False)

    assert refused.returncode == 1
    assert "is mounted by 1 container(s)" in refused.stderr
    assert user.volume("photos@master") in refused.stderr
    assert user.repos() == repos
    assert user.log("photos") == commits
    assert user.exec(container, "cat /data/a /data/b").stdout == "1\n2\n"
    assert user.release(container) == 0
    after = user.wait_for_commits("photos", 2)
    assert after[1:] == commits
    assert user.files("photos", after[0]["id"]) == {"a": "1", "b": "2"}


@pytest.mark.parametrize("pfs", BACKENDS, indirect=True)
def test_anonymous_volumes_are_refused_with_a_clear_error(user: DockerUser) -> None:
    ran = user.engine.run(
        "--volume-driver", user.driver, "-v", "/data", user.image, "true", check=False
    )
    assert ran.returncode != 0
    assert "anonymous volume" in ran.stderr and f"{user.driver}/photos:/data" in ran.stderr
    assert user.repos() == []
