"""pfs as a managed plugin through its life cycle: disable and enable, ``docker plugin
set`` and an engine restart keep every repo, commit and mount record, and a mount held
across a plugin restart still commits; repos move to a legacy daemon and back on the same
state dir. (A SIGKILLed plugin process: test_daemon_crash.)

These tests restart and kill things, and take a minute and a half together, so they
run on an engine and plugin of their own, in the managed group (tests/e2e/conftest.py,
``MANAGED_GROUP``), with the managed runs of the core flows: on another worker than the
legacy end-to-end modules, at the same time, from the same plugin build. (The plugin's
socket is in its own folder, /run/docker/plugins/ID, where no other engine's name
lookups look.)
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.conftest import (
    RECONCILE_OFTEN,
    enabled_plugin,
    forget_docker_state,
    running_engine,
)
from tests.e2e.docker_user import WAIT_FOR_RELEASE, DockerUser
from tests.managed_plugin import MANAGED, LocalRegistry, ManagedPlugin
from tests.pfs_node import PfsNode, unique_driver_name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("managed-plugin"),
    pytest.mark.parametrize("pfs", [MANAGED], indirect=True),
]


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """This module's own engine (it restarts it)."""
    yield from running_engine(tmp_path_factory.mktemp("docker"))


@pytest.fixture(scope="module")
def image(docker_engine: DockerEngine) -> str:
    """The busybox image on this module's engine."""
    return docker_engine.busybox_image()


@pytest.fixture(scope="module")
def managed_plugin(
    tmp_path_factory: pytest.TempPathFactory,
    docker_engine: DockerEngine,
    plugin_build: tuple[Path, str],
) -> Iterator[ManagedPlugin]:
    """The plugin on this module's engine (the ``pfs`` fixture hands it out)."""
    yield from enabled_plugin(docker_engine, plugin_build, tmp_path_factory.mktemp("managed"))


def process_env(pid: int) -> dict[str, str]:
    """The environment a process started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_disable_set_enable_keeps_repos_commits_and_a_held_mount_commits(
    user: DockerUser, pfs: ManagedPlugin
) -> None:
    user.run("photos", "echo 1 > /data/a")
    [first] = user.log("photos")
    container = user.start("photos@master")
    user.exec(container, "echo before > /data/before")
    [mount_id] = user.inspect_volume("photos@master")["Status"]["mount_ids"]
    old_pid = pfs.pid()

    pfs.disable()
    assert pfs.pid() is None
    pfs.set("PFS_MAX_JOBS=3")
    pfs.enable()

    pid = pfs.pid()
    assert pid is not None and pid != old_pid
    assert "PFS_MAX_JOBS=3" in pfs.inspect()["Settings"]["Env"]
    assert process_env(pid)["PFS_MAX_JOBS"] == "3"
    assert user.log("photos") == [first]
    assert [m["id"] for m in pfs.cli_json("mount", "list")] == [mount_id]
    user.exec(container, "echo after > /data/after")
    assert user.release(container) == 0
    commits = user.wait_for_commits("photos", 2)
    assert len(commits) == 2
    assert commits[0]["parent"] == first["id"]
    assert mount_id in commits[0]["message"]
    assert user.files("photos", commits[0]["id"]) == {
        "a": "1",
        "before": "before",
        "after": "after",
    }


def test_an_engine_restart_keeps_every_repo_and_commit(
    user: DockerUser, pfs: ManagedPlugin, docker_engine: DockerEngine
) -> None:
    user.run("photos", "echo 1 > /data/a")
    user.run("photos/side", "echo 2 > /data/b")
    before = {ref: user.log(ref) for ref in ("photos", "photos/side")}

    docker_engine.stop()
    assert pfs.pid() is None
    docker_engine.start()
    pfs.start()

    assert {ref: user.log(ref) for ref in before} == before
    user.run("photos", "echo 3 > /data/c")
    commits = user.log("photos")
    assert commits[1:] == before["photos"]
    assert user.files("photos", commits[0]["id"]) == {"a": "1", "c": "3"}


def test_repos_move_between_the_plugin_and_a_legacy_daemon_on_the_same_state_dir(
    user: DockerUser, pfs: ManagedPlugin, docker_engine: DockerEngine, image: str, tmp_path: Path
) -> None:
    """The migration README describes, both ways: the plugin disabled, a legacy daemon
    serves its state dir (the propagated mount on the host) under another driver name
    and commits there; enabled again, the plugin has both commits."""
    user.run("photos", "echo 1 > /data/a")
    [first] = user.log("photos")
    state_dir = pfs.pool_root.parent
    pfs.disable()
    legacy = PfsNode(
        state_dir,
        driver_name=unique_driver_name("pfsmigrate"),
        env={"PFS_DOCKER_HOST": docker_engine.host},
        args=RECONCILE_OFTEN,
    )
    legacy.api_socket = tmp_path / "api.sock"  # the state dir's path is too long for one
    try:
        legacy.start()
        by_legacy = DockerUser(docker_engine, image, legacy)
        assert by_legacy.log("photos") == [first]
        by_legacy.run("photos", "echo 2 > /data/b")
        forget_docker_state(docker_engine, legacy.listed_driver)
    finally:
        legacy.cleanup()
    pfs.enable()

    commits = user.log("photos")
    assert len(commits) == 2
    assert commits[1] == first
    assert user.files("photos", "master") == {"a": "1", "b": "2"}


def start_for_long(user: DockerUser, name: str) -> str:
    """``user.start``, but the container waits up to 3 minutes for its release: an
    upgrade pulls the whole plugin again."""
    script = WAIT_FOR_RELEASE.replace("-lt 300", "-lt 1800")
    detached = ["run", "-d", "--pull=never", "--network", "none", *user.mount_args(name)]
    done = user.engine.docker(*detached, user.image, "sh", "-c", script)
    return done.stdout.strip()


def test_an_upgrade_to_a_new_build_keeps_repos_commits_and_a_held_mount(
    user: DockerUser,
    pfs: ManagedPlugin,
    docker_engine: DockerEngine,
    plugin_build: tuple[Path, str],
    tmp_path: Path,
) -> None:
    """``docker plugin upgrade`` from a registry on a loopback port to a new build (the
    session's, marked): the new root file system runs on the same pool with the same
    settings, and a mount held across the upgrade commits."""
    folder, driver = plugin_build
    user.run("photos", "echo 1 > /data/a")
    [first] = user.log("photos")
    newer = tmp_path / "v2"
    subprocess.run(["cp", "-al", str(folder), str(newer)], check=True)
    config = json.loads((newer / "config.json").read_text())
    config["description"] += " (v2)"
    (newer / "config.json").unlink()  # a hard link to the session's build: not in place
    (newer / "config.json").write_text(json.dumps(config))
    (newer / "rootfs" / "etc" / "pfs-build").write_text("v2\n")
    registry = LocalRegistry(tmp_path / "registry").start()
    remote = f"{registry.address}/{driver}:v2"
    try:
        docker_engine.docker("plugin", "create", remote, str(newer), timeout=300)
        docker_engine.docker("plugin", "push", remote, timeout=300)
        docker_engine.docker("plugin", "rm", remote)
        container = start_for_long(user, "photos@master")
        user.exec(container, "echo before > /data/before")
        [mount_id] = user.inspect_volume("photos@master")["Status"]["mount_ids"]
        kept = pfs.inspect()["Settings"]["Env"]
        pfs.disable()
        docker_engine.docker(
            "plugin",
            "upgrade",
            "--grant-all-permissions",
            "--skip-remote-check",
            pfs.name,
            remote,
            timeout=300,
        )
    finally:
        registry.stop()
    assert sorted(pfs.inspect()["Settings"]["Env"]) == sorted(kept)
    # Docker 20.10 shows the mounts' sources kept, but starts the upgraded plugin with
    # config.json's: they are set again (README, "Upgrading").
    pfs.set(*(setting for setting in pfs.settings() if ".source=" in setting))
    pfs.enable()
    pid = pfs.pid()
    assert pid is not None
    assert process_env(pid)["PFS_RECONCILE_INTERVAL"] == "1"

    upgraded = pfs.inspect()
    assert upgraded["PluginReference"].endswith(f"/{driver}:v2")
    assert upgraded["Config"]["Description"].endswith("(v2)")
    assert (pfs.rootfs / "etc" / "pfs-build").read_text() == "v2\n"
    assert user.log("photos") == [first]
    assert [m["id"] for m in pfs.cli_json("mount", "list")] == [mount_id]
    user.exec(container, "echo after > /data/after")
    assert user.release(container) == 0
    commits = user.wait_for_commits("photos", 2)
    assert len(commits) == 2
    assert mount_id in commits[0]["message"]
    assert user.files("photos", commits[0]["id"]) == {
        "a": "1",
        "before": "before",
        "after": "after",
    }
